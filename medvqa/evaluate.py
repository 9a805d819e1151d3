"""Evaluate a training run under a named protocol: ``medvqa evaluate --run RUN_DIR [--protocol NAME]``.

Protocols (see the README for what each means):

- ``sound`` (default): all test QA, the run's answer set, gold answer types, the checkpoint with the
  best validation accuracy.
- ``mevf-legacy``: VQA-RAD freeform test QA only, the last epoch (MEVF's own numbers).
- ``pubmedclip-legacy``: all test QA, the best epoch on the test set; QCR questions are routed by
  the question-type classifier and open / closed accuracies use the routed counts.

Writes ``results.json`` and ``predictions.csv`` (the latest evaluation) and per-protocol copies
``results_<protocol>.json`` / ``predictions_<protocol>.csv``. Several ``--run`` give mean and
standard deviation over them (e.g. seeds).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medvqa.config import read_run_config
from infra.cli import Parser
from infra.errors import UserError
from medvqa.experiment import build_experiment, build_type_classifier, predict, predict_open
from medvqa.metrics import prediction_frame, summarize
from infra.files import write_text_atomic


@dataclass(frozen=True)
class Protocol:
    checkpoint: str  # file under checkpoints/
    freeform_only: bool  # VQA-RAD: only the 308 freeform test QA
    routing: str  # "gold": by answer type; "classifier": QCR routed by the type classifier
    answer_vocab: dict[str, str]  # answer set the published runs used, per dataset (for notes)


PROTOCOLS = {
    "sound": Protocol("best_val", False, "gold", {}),
    "mevf-legacy": Protocol("last", True, "gold", {"vqa_rad": "train"}),
    "pubmedclip-legacy": Protocol("best_test", False, "classifier", {"vqa_rad": "train", "slake": "train+test"}),
}


def _write_json(data: dict, path: Path) -> None:
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def evaluate_run(run_dir: str | Path, protocol: str = "sound", device: str = "auto",
                 data_root: str | Path | None = None) -> dict:
    """Evaluate ``run_dir`` under ``protocol`` on ``device``; write and return the results.

    ``data_root``: the prepared dataset, where it is not at the run's ``data.root`` (another machine).
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    run_dir, spec = Path(run_dir), PROTOCOLS[protocol]
    config = read_run_config(run_dir)
    config.train = dataclasses.replace(config.train, device=device)
    if data_root is not None:
        config.data = dataclasses.replace(config.data, root=str(data_root))
    path = run_dir / "checkpoints" / f"{spec.checkpoint}.pt"
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path} (is the run trained?)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    exp = build_experiment(config, state, where=str(path))
    test = exp.splits["test"]
    if spec.freeform_only:
        test = test.subset([r.phrase_type == "freeform" for r in test.records])
    is_open = torch.tensor([r.answer_type == "OPEN" for r in test.records], dtype=torch.bool)
    router_path = run_dir / "type_classifier.pt"
    routed = spec.routing == "classifier" and config.model.name == "qcr"
    if routed:
        if not router_path.is_file():
            raise UserError(f"{router_path} not found: protocol {protocol} routes QCR with the type classifier "
                            "(train with type_classifier.epochs > 0)")
        router = build_type_classifier(exp)
        router.load_state_dict(torch.load(router_path, map_location="cpu", weights_only=True)["model"])
        is_open = predict_open(router, test.tokens)
    routes = ["OPEN" if o else "CLOSED" for o in is_open.tolist()]
    frame = prediction_frame(test.records, predict(exp, test, is_open), routes, set(exp.answers))
    notes = []
    expected_vocab = spec.answer_vocab.get(exp.ds.name)
    if expected_vocab and expected_vocab != config.data.answer_vocab:
        notes.append(f"the published runs used answer vocabulary {expected_vocab!r}; this run used "
                     f"{config.data.answer_vocab!r}")
    if spec.checkpoint == "best_test":
        notes.append("best epoch chosen on the test set: optimistic, for comparison with published numbers only")
    if spec.checkpoint == "best_val" and not len(exp.splits["val"]):
        notes.append("no validation split (trained on it): the last epoch, not a validation choice")
    results = {"protocol": protocol, "dataset": exp.ds.name, "model": config.model.name,
               "checkpoint": spec.checkpoint, "epoch": state["epoch"], "answer_vocab": config.data.answer_vocab,
               "routing": "type classifier" if routed else "gold answer type",
               **summarize(frame), "notes": notes,
               "data": {"square_filter": exp.ds.summary.get("square_filter"), "digests": exp.data_digests}}
    _write_json(results, run_dir / f"results_{protocol}.json")
    _write_json(results, run_dir / "results.json")
    predictions = frame.to_csv(index=False)
    write_text_atomic(run_dir / f"predictions_{protocol}.csv", predictions)
    write_text_atomic(run_dir / "predictions.csv", predictions)
    print(f"{run_dir} [{protocol}, epoch {state['epoch']}]: open {results['open']} closed {results['closed']} "
          f"overall {results['overall']} (n_open {results['n_open']}, n_closed {results['n_closed']}, "
          f"unanswerable {results['n_unanswerable']})")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="medvqa evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True,
                        help="run directory (repeat for mean and std over runs)")
    parser.add_argument("--protocol", default="sound", choices=list(PROTOCOLS))
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    parser.add_argument("--data-root", type=Path, help="prepared dataset, if not at the run's data.root")
    args = parser.parse_args(argv)
    results = [evaluate_run(run, args.protocol, args.device, args.data_root) for run in args.run]
    if len(results) > 1:
        for key in ("open", "closed", "overall"):
            values = np.array([r[key] for r in results if r[key] is not None], dtype=float)
            print(f"{key}: {values.mean():.2f} +- {values.std(ddof=1):.2f} over {len(values)} runs")
    return 0
