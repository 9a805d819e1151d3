"""Evaluate a training run under a named protocol: ``medvqa evaluate --run RUN_DIR [--protocol NAME]``.

The protocols (``sound``, ``mevf-legacy``, ``pubmedclip-legacy``) are defined in ``medvqa.protocols``.
Writes ``results.json`` and ``predictions.csv`` (the latest evaluation) and per-protocol copies
``results_<protocol>.json`` / ``predictions_<protocol>.csv``. Several ``--run`` give mean and
standard deviation over them (e.g. seeds).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from data_prep.datasets import published_answer_vocab
from infra.cli import Parser
from infra.errors import UserError
from infra.files import write_text_atomic
from medvqa.config import read_run_config
from medvqa.experiment import build_experiment, build_type_classifier, predict_open, predict_topk
from medvqa.metrics import prediction_frame, summarize
from medvqa.protocols import PROTOCOLS, get_protocol


def _write_json(data: dict, path: Path) -> None:
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def evaluate_run(run_dir: str | Path, protocol: str = "sound", device: str = "auto",
                 data_root: str | Path | None = None) -> dict:
    """Evaluate ``run_dir`` under ``protocol`` on ``device``; write and return the results.

    ``data_root``: the prepared dataset, where it is not at the run's ``data.root`` (another machine).
    """
    spec = get_protocol(protocol)
    run_dir = Path(run_dir)
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
    if spec.phrase_types is not None:
        test = test.subset([r.phrase_type in spec.phrase_types for r in test.records])
        if not len(test):
            raise UserError(f"protocol {protocol} keeps the test QA of phrase types {list(spec.phrase_types)}: "
                            f"{exp.ds.name} has none")
    is_open = torch.tensor([r.answer_type == "OPEN" for r in test.records], dtype=torch.bool)
    router_path = run_dir / "type_classifier.pt"
    routed = spec.routing == "classifier" and exp.model.routed_by_type
    if routed:
        if not router_path.is_file():
            raise UserError(f"{router_path} not found: protocol {protocol} routes {config.model.name} with the "
                            "type classifier (train with type_classifier.epochs > 0)")
        router = build_type_classifier(exp)
        router.load_state_dict(torch.load(router_path, map_location="cpu", weights_only=True)["model"])
        is_open = predict_open(router, test.tokens)
    routes = ["OPEN" if o else "CLOSED" for o in is_open.tolist()]
    best = [top[0] for top in predict_topk(exp, test, is_open, k=1)]
    frame = prediction_frame(test.records, [answer for answer, _ in best], routes, set(exp.answers),
                             [round(probability, 6) for _, probability in best])
    notes = []
    published_vocab = published_answer_vocab(exp.ds.name)
    if spec.published and published_vocab and published_vocab != config.data.answer_vocab:
        notes.append(f"the published runs used answer vocabulary {published_vocab!r}; this run used "
                     f"{config.data.answer_vocab!r}")
    if spec.test_selected:
        notes.append("best epoch chosen on the test set: optimistic, for comparison with published numbers only")
    if spec.selected_by == "val" and not len(exp.splits["val"]):
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
    parser.add_argument("--protocol", default="sound", help=f"one of: {', '.join(PROTOCOLS)}")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    parser.add_argument("--data-root", type=Path, help="prepared dataset, if not at the run's data.root")
    args = parser.parse_args(argv)
    results = [evaluate_run(run, args.protocol, args.device, args.data_root) for run in args.run]
    if len(results) > 1:
        for key in ("open", "closed", "overall"):
            values = np.array([r[key] for r in results if r[key] is not None], dtype=float)
            print(f"{key}: {values.mean():.2f} +- {values.std(ddof=1):.2f} over {len(values)} runs")
    return 0
