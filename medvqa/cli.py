"""The ``medvqa`` command: ``prepare``, ``train``, ``evaluate``, ``demo``, ``compare``, ``grid``, ``predict``.

Each subcommand is a ``main(argv) -> int`` that tests call directly. Bad input raises ``UserError``,
printed here as one line on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from infra.cli import Parser, run_command

DATA_ROOT_HINT = "../shared/data"


def format_summary(summary: dict) -> str:
    """A short human-readable view of ``summary.json``."""
    lines = [f"dataset {summary['dataset']}  ({summary['source']})",
             f"{'split':<6}{'total':>7}{'closed':>8}{'open':>7}"]
    for split, counts in summary["counts"].items():
        lines.append(f"{split:<6}{counts['total']:>7}{counts['CLOSED']:>8}{counts['OPEN']:>7}")
    answers, dictionary = summary["answers"], summary["dictionary"]
    unanswerable = summary["unanswerable_test"][answers["source"]]
    lines += [
        f"images {summary['images']}  caches {', '.join(summary['image_specs'])}",
        f"dictionary {dictionary['words']} words (+{dictionary['ntoken'] - dictionary['words']} unknown token), "
        f"GloVe rows {summary['glove']['words_covered']}",
        f"answers from {answers['source']}: {answers['all']} (closed {answers['closed']}, open {answers['open']}); "
        f"test QA outside them: {unanswerable['total']} ({unanswerable['OPEN']} open)",
        f"prepared in {summary['seconds']:.1f} s, {summary['disk_bytes'] / 2**20:.1f} MiB",
    ]
    return "\n".join(lines)


def _add_dataset_flags(parser: argparse.ArgumentParser, dataset: str) -> dict[str, str]:
    """One flag per field of ``dataset``'s registered options dataclass; returns argparse dest -> field."""
    from data_prep.datasets import DATASETS

    options = DATASETS.entry(dataset).settings
    hints = typing.get_type_hints(options)
    group = parser.add_argument_group(f"{dataset} options")
    dests = {}
    for spec in dataclasses.fields(options):
        kind, meta = hints[spec.name], spec.metadata
        flags = [f"--{spec.name.replace('_', '-')}", *meta.get("aliases", ())]
        if kind is bool:
            convert: dict = {"action": argparse.BooleanOptionalAction}
        elif kind in (str, int, float, Path):
            convert = {"type": kind, "metavar": None if meta.get("choices") else spec.name.upper()}
        else:
            raise TypeError(f"dataset {dataset!r}: option {spec.name} is a {kind}, not str, int, float, Path or bool")
        dest = f"dataset_{spec.name}"
        group.add_argument(*flags, dest=dest, default=argparse.SUPPRESS, choices=meta.get("choices") or None,
                           help=f"{meta.get('help', '')} (default: {spec.default})", **convert)
        dests[dest] = spec.name
    return dests


def prepare_main(argv: list[str] | None = None) -> int:
    """``medvqa prepare DATASET --source PATH --out DIR [options]``; ``DATASET --help`` lists its own options."""
    from data_prep.datasets import DATASETS
    from data_prep.images import DEFAULT_IMAGE_SPECS, RESIZE_FILTERS
    from data_prep.prepare import PrepareOptions, prepare
    from infra.plugins import import_plugins

    first = Parser(add_help=False)  # the dataset and the plug-ins that may register it decide the other flags
    first.add_argument("dataset", nargs="?")
    first.add_argument("--plugin", action="append", default=[])
    known, _ = first.parse_known_args(argv)
    import_plugins(known.plugin, where="--plugin")

    parser = Parser(prog="medvqa prepare", description="Validate a raw dataset and write a prepared directory "
                                                       "(medvqa prepare DATASET --help adds the dataset's options).")
    parser.add_argument("dataset", help=f"one of: {', '.join(DATASETS.names())}")
    parser.add_argument("--source", type=Path, help="raw download (VQA-RAD: data_RAD/ or the release folder; "
                                                    "SLAKE: Slake1.0/)")
    parser.add_argument("--out", type=Path, required=True, help="prepared directory to create")
    parser.add_argument("--plugin", action="append", default=[],
                        help="module or .py file that registers a dataset (repeatable)")
    parser.add_argument("--glove", type=Path, help="glove.6B.300d.txt or an .npz with words/vectors")
    parser.add_argument("--legacy-files", action="store_true", help="also write the published MEVF/QCR file set")
    parser.add_argument("--answers-from", default="train",
                        help="answer vocabulary source: train, train+val, train+test")
    parser.add_argument("--unknown", default="token", choices=["token", "last-word"],
                        help="unknown question words: explicit <unk> token, or the published last-word mapping")
    parser.add_argument("--image-specs", default=",".join(DEFAULT_IMAGE_SPECS),
                        help="comma-separated image caches: gray<N> (square resize), rgb<N> (CLIP resize and crop)")
    parser.add_argument("--resize-filter", default="bicubic", choices=list(RESIZE_FILTERS),
                        help="filter of the square gray caches (Pillow>=7 default bicubic; Pillow 6 used nearest)")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="held-out validation part of train")
    parser.add_argument("--val-seed", type=int, default=0)
    parser.add_argument("--encoder-weights", type=Path, metavar="DIR",
                        help="folder holding the MEVF pretrained_maml.weights / pretrained_ae.pth to carry "
                             "(default: the folder read, where it holds them)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    own = _add_dataset_flags(parser, known.dataset) if known.dataset in DATASETS.names() else {}
    args = parser.parse_args(argv)
    values = {name: getattr(args, dest) for dest, name in own.items() if hasattr(args, dest)}
    options = PrepareOptions(
        source=args.source, glove=args.glove, answers_from=args.answers_from, unknown=args.unknown,
        image_specs=[s for s in args.image_specs.split(",") if s], square_filter=args.resize_filter,
        val_fraction=args.val_fraction, val_seed=args.val_seed, legacy_files=args.legacy_files,
        overwrite=args.overwrite, encoder_weights=args.encoder_weights,
        dataset_options=DATASETS.settings(args.dataset, values, where="medvqa prepare"))
    summary = prepare(args.dataset, args.out, options)
    print(format_summary(summary))
    print(f"wrote {args.out}")
    return 0


def _delegate(module: str) -> Callable[[list[str]], int]:
    return lambda argv: importlib.import_module(module).main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "prepare": prepare_main,
    "train": _delegate("medvqa.train"),
    "evaluate": _delegate("medvqa.evaluate"),
    "demo": _delegate("medvqa.demo"),
    "compare": _delegate("medvqa.compare"),
    "grid": _delegate("medvqa.grid.cli"),
    "predict": _delegate("medvqa.predict"),
}


def main(argv: list[str] | None = None) -> int:
    return run_command("medvqa", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
