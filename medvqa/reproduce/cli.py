"""The command line over a grid: ``list``, ``run``, ``evaluate``, ``report`` and ``status``.

A project defines its grid and calls ``main(grid)`` from a script of its own::

    GRID = Grid({"vqa_rad-qcr": Row("configs/vqa_rad/qcr.yaml", ("sound",))}, root=Path(__file__).parent)
    sys.exit(main(GRID))
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from infra.cli import positive_int
from infra.errors import UserError
from medvqa.reproduce.readme import update_readme
from medvqa.reproduce.report import report
from medvqa.reproduce.rows import Grid
from medvqa.reproduce.runner import evaluate_row, run_row
from medvqa.reproduce.status import run_status


def data_location(datasets: Sequence[str], text: str) -> tuple[str, str]:
    """``DATASET=DIR`` as (dataset, folder), the dataset one of ``datasets``."""
    dataset, sep, root = text.partition("=")
    if not sep or not root or dataset not in datasets:
        raise argparse.ArgumentTypeError(f"{text!r} is not DATASET=DIR (DATASET one of {', '.join(datasets)}), "
                                         f"e.g. {datasets[0]}=data/{datasets[0]}_nearest")
    return dataset, root


def seed_list(text: str) -> list[int]:
    """``1204,1,2`` as a list of seeds."""
    try:
        return [int(seed) for seed in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def parser(grid: Grid, description: str | None = None) -> argparse.ArgumentParser:
    """The command line of ``main``."""
    parser = argparse.ArgumentParser(description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    runs = argparse.ArgumentParser(add_help=False)
    runs.add_argument("--runs", type=Path, default=grid.runs, help="the folder the runs are trained in")
    seeds = argparse.ArgumentParser(add_help=False, parents=[runs])
    seeds.add_argument("row", choices=list(grid.rows))
    seeds.add_argument("--seeds", type=seed_list, default="1204", help="comma-separated seeds")
    out = argparse.ArgumentParser(add_help=False, parents=[runs])
    out.add_argument("--out", type=Path, default=grid.out, required=grid.out is None,
                     help="the report's folder (its archive)")
    sub.add_parser("list")
    run = sub.add_parser("run", parents=[seeds])
    datasets = ", ".join(grid.datasets)
    run.add_argument("--data", type=partial(data_location, grid.datasets), action="append", default=[],
                     help=f"DATASET=DIR prepared data, DATASET one of {datasets}")
    run.add_argument("--stop-after", type=positive_int, metavar="N",
                     help="train each run N epochs into its schedule, then evaluate it as it stands "
                          "(the same command without it goes on)")
    sub.add_parser("evaluate", parents=[seeds],
                   help="evaluate the runs of a row as they stand, e.g. after stopping them")
    sub.add_parser("status", parents=[out],
                   help="how far each run trained, what to run next and how long that takes")
    rep = sub.add_parser("report", parents=[out])
    rep.add_argument("--readme", type=Path, help="also refresh the blocks of this file that quote the report's files")
    return parser


def main(grid: Grid, argv: list[str] | None = None, description: str | None = None) -> int:
    """Run one command over ``grid``; ``run`` takes config overrides (``key=value``) after its options.
    Returns the exit status (2: a ``UserError``, printed on one line)."""
    commands = parser(grid, description)
    args, extra = commands.parse_known_args(argv)
    overrides = [item for item in extra if "=" in item and not item.startswith("-")]
    if args.command != "run" and extra or len(overrides) != len(extra):
        commands.error(f"unrecognized arguments: {' '.join(i for i in extra if i not in overrides) or ' '.join(extra)}")
    try:
        if args.command == "list":
            for name, row in grid.rows.items():
                print(f"{name:<32} {row.config:<38} {', '.join(row.protocols)}")
        elif args.command == "run":
            run_row(grid, args.row, args.seeds, args.runs, dict(args.data), overrides, args.stop_after)
        elif args.command == "evaluate":
            evaluate_row(grid, args.row, args.seeds, args.runs)
        elif args.command == "status":
            states = run_status(grid, args.runs, args.out)
            print(states.to_string(index=False) if not states.empty else f"no runs under {args.runs} or {args.out}")
        else:
            print(report(grid, args.runs, args.out).to_string(index=False))
            if args.readme:
                print(f"refreshed {update_readme(args.readme, args.out)} blocks of {args.readme}")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
