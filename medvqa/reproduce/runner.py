"""Train and evaluate the runs of a row, ``<runs>/<row>/s<seed>/``, one per seed."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.errors import UserError
from medvqa import evaluate, train
from medvqa.config import load_config
from medvqa.data import PreparedDataset
from medvqa.reproduce.rows import Grid


def check_resize_filter(grid: Grid, name: str, data_root: Path) -> None:
    """Refuse data whose image caches were resized with another filter than the row states."""
    found = PreparedDataset(data_root).summary.get("square_filter", "bicubic")
    row = grid.rows[name]
    if found != row.resize_filter:
        raise UserError(f"row {name} needs data prepared with --resize-filter {row.resize_filter}, but "
                        f"{data_root / 'summary.json'} says {found}: pass --data {row.dataset}=DIR")


def run_row(grid: Grid, name: str, seeds: Sequence[int], runs: Path, data: Mapping[str, str],
            overrides: Sequence[str] = (), stop_after: int | None = None) -> None:
    """Train each seed of row ``name`` (resumable: a finished run is not redone, an interrupted one is
    continued), then evaluate it under the row's protocols. ``data``: dataset -> prepared data folder,
    for the datasets not read from their config's ``data.root``; ``overrides``: for every seed;
    ``stop_after``: train each run that far into its schedule and evaluate it as it stands."""
    row, config = grid.rows[name], grid.config_path(name)
    extra = [f"data.root={data[row.dataset]}"] if row.dataset in data else []
    check_resize_filter(grid, name, Path(load_config(config, [*extra, *row.overrides, *overrides]).data.root))
    for seed in seeds:
        run_dir = runs / name / f"s{seed}"
        stop = ["--stop-after", str(stop_after)] if stop_after else []
        status = train.main(["--config", str(config), "--out", str(run_dir), *stop, f"train.seed={seed}", *extra,
                             *row.overrides, *overrides])
        if status != 0:
            raise UserError(f"training {run_dir} failed with status {status}")
        evaluate_row(grid, name, [seed], runs)


def evaluate_row(grid: Grid, name: str, seeds: Sequence[int], runs: Path) -> None:
    """Evaluate the runs of a row as they stand under its protocols (a stopped run: its best epochs so far)."""
    for seed in seeds:
        for protocol in grid.rows[name].protocols:
            evaluate.evaluate_run(runs / name / f"s{seed}", protocol)
