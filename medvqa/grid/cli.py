"""``medvqa grid --grid FILE --out DIR [--engine local|submitit|dask]``: train and evaluate every cell of a
grid of heads x visual encoders x datasets x seeds, then write the report (``DIR/report.html``, tables).

Resumable: finished cells are never re-run, interrupted ones continue after their last finished epoch.
Cells whose prepared data or weights are missing are skipped with the reason (``DIR/status.csv``).
``--only PATTERN`` runs a part of the grid (several processes or machines can share one grid directory,
each with its own part); the status and the report always cover every finished cell. ``--report-dir``
puts them elsewhere (a folder of the repository that keeps a study's tables), and ``--readme FILE`` copies
the report's tables into the blocks of FILE that quote them.
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd

from infra.cli import Parser
from infra.errors import UserError
from infra.files import file_lock, write_text_atomic
from medvqa.grid.runner import CELL_FILE, ENGINES, cell_state, check_finished, failure_file, run_cells
from medvqa.grid.spec import Grid, load_grid
from medvqa.reproduce.readme import update_readme


def engine_options(entries: list[str]) -> dict[str, str]:
    options = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise UserError(f"--engine-option {entry!r}: expected KEY=VALUE, e.g. timeout_min=600")
        options[key] = value
    return options


def selected(grid: Grid, patterns: list[str]) -> set[str]:
    """The names of the cells matching any of ``patterns`` (all cells when there is none)."""
    names = [plan.name for plan in grid.cells]
    if not patterns:
        return set(names)
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in names):
            raise UserError(f"--only {pattern!r} matches no cell of {grid.path} (cells are named like {names[0]})")
    return {name for name in names if any(fnmatchcase(name, pattern) for pattern in patterns)}


def status_frame(grid: Grid) -> pd.DataFrame:
    """One row per cell, read from the grid directory (so it covers every process's cells): its state, why it
    did not run or failed, and its accuracy under the first protocol."""
    protocol = grid.spec.protocols[0]
    rows = []
    for plan in grid.cells:
        state, reason, overall = cell_state(plan), plan.skip, None
        if state == "done":
            try:
                overall = check_finished(plan)["results"][protocol]["overall"]
            except UserError as error:  # finished meanwhile by a process given other overrides
                state, reason = "conflict", str(error)
        elif failure_file(plan).is_file():
            state, reason = "failed", failure_file(plan).read_text().strip()
        rows.append({"cell": plan.name, "dataset": plan.dataset, "head": plan.head, "encoder": plan.encoder,
                     "seed": plan.seed, "state": state, f"overall_{protocol}": overall, "reason": reason})
    return pd.DataFrame(rows)


def write_grid_report(grid: Grid, out: Path) -> Path | None:
    """The report over the finished cells (grouped over seeds; a row with none says so), or None when no cell
    has finished."""
    from medvqa.report import Cell, write_report

    runs: dict[tuple[str, str, str], list[Path]] = {}
    for plan in grid.cells:
        finished = runs.setdefault((plan.dataset, plan.head, plan.encoder), [])
        if (plan.run_dir / CELL_FILE).is_file():
            finished.append(plan.run_dir)
    if not any(runs.values()):
        return None
    cells = [Cell(dataset, head, encoder, tuple(dirs)) for (dataset, head, encoder), dirs in runs.items()]
    return write_report(cells, out, baseline=grid.spec.baseline, protocol=grid.spec.protocols[0], title=grid.title)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="medvqa grid", description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--grid", type=Path, required=True, help="grid file (YAML), e.g. configs/grids/*.yaml")
    parser.add_argument("--out", type=Path, required=True, help="grid directory (created, or resumed)")
    parser.add_argument("--engine", default="local", help=f"one of: {', '.join(ENGINES)} (one cell per job)")
    parser.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE",
                        help="submitit: cluster=slurm|local, timeout_min=, slurm_partition=, gpus_per_node=, ...; "
                             "dask: scheduler=ADDRESS or workers=N")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="run only the cells whose name (dataset/head/encoder/sSEED) matches; repeatable, "
                             "e.g. --only 'slake/*' --only '*/maml/*'")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and their state; run nothing")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: write the status and the report over the finished cells")
    parser.add_argument("--report-dir", type=Path,
                        help="write status.csv and the report here instead of the grid directory")
    parser.add_argument("--readme", type=Path,
                        help="also refresh the blocks of this Markdown file that quote a file of the report")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides for every cell, e.g. train.epochs=2")
    args = parser.parse_args(argv)
    if args.engine not in ENGINES:
        raise UserError(f"unknown engine {args.engine!r}: choose from {', '.join(ENGINES)}")
    options = engine_options(args.engine_option)
    if args.readme and not args.readme.is_file():
        raise UserError(f"--readme {args.readme} is not a file")
    report_dir = args.report_dir or args.out
    grid = load_grid(args.grid, args.out, args.overrides)
    states = {plan.name: cell_state(plan) for plan in grid.cells}
    for plan in grid.cells:
        if states[plan.name] == "done":
            check_finished(plan)  # the grid asks the config it was finished with
    # seed by seed: an interrupted grid holds every encoder's runs of its first seeds, the pairs its tests compare
    chosen = selected(grid, args.only) if not args.report_only else set()
    todo = sorted((plan for plan in grid.cells if states[plan.name] in ("pending", "partial") and plan.name in chosen),
                  key=lambda plan: grid.spec.seeds.index(plan.seed))
    counts = {state: list(states.values()).count(state) for state in ("done", "partial", "pending", "skipped")}
    print(f"{grid.title}: {len(grid.cells)} cells: " + ", ".join(f"{n} {state}" for state, n in counts.items()))
    for plan in grid.cells:
        if plan.skip:
            print(f"skipped {plan.name}: {plan.skip}")
    if args.only:
        print(f"--only: {len(todo)} of them to run here")
    if args.dry_run:
        for plan in grid.cells:
            outside = "  (not in --only)" if args.only and plan.name not in chosen else ""
            print(f"{states[plan.name]:<8} {plan.name}  {plan.run_dir}{outside}")
        return 0
    outcomes = run_cells(todo, args.engine, options, args.out)
    with file_lock(args.out / ".report.lock"):  # one process at a time writes the status and the report
        status = status_frame(grid)
        write_text_atomic(report_dir / "status.csv", status.to_csv(index=False))
        report = write_grid_report(grid, report_dir)
    for row in status[status.state.isin(["failed", "conflict"])].itertuples():
        print(f"{row.state} {row.cell}: {row.reason}")
    print(f"cell states in {report_dir / 'status.csv'}")
    print(f"report: {report}" if report else "no finished cell yet: no report")
    if args.readme:
        if not report:
            raise UserError(f"--readme {args.readme}: no finished cell, so no report to quote")
        print(f"refreshed {update_readme(args.readme, report_dir)} blocks of {args.readme}")
    return 1 if any(outcome.state == "failed" for outcome in outcomes) else 0
