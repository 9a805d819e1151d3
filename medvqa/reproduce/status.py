"""Where each run of a grid stands: epochs trained and archived, whether its results are current,
and the command it needs next."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from medvqa.config import load_config
from medvqa.reproduce.archive import check_report_folder, config_changes
from medvqa.reproduce.results import picked_epoch, planned_epochs, saved_config
from medvqa.reproduce.rows import Grid


def _run_metrics(run_dir: Path) -> pd.DataFrame | None:
    """The run's ``metrics.csv`` (empty before its first epoch); None where there is no run."""
    if not (run_dir / "config.yaml").is_file():
        return None
    return pd.read_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").is_file() else pd.DataFrame()


def time_to_train(metrics: pd.DataFrame, epochs: int) -> str:
    """About how long ``epochs`` epochs take at the median pace of the last ten timed epochs of ``metrics``
    (its ``seconds`` column, each epoch's evaluation included, the protocols' final one not): ``-`` where
    no epoch was timed."""
    timed = metrics["seconds"].dropna() if "seconds" in metrics else pd.Series(dtype=float)
    if epochs <= 0 or timed.empty:
        return "-"
    minutes = max(1, round(epochs * float(timed.tail(10).median()) / 60))
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes} min"


def _result_state(run_dir: Path, protocol: str, metrics: pd.DataFrame) -> str:
    """``protocol``'s result in ``run_dir`` in a word: the epoch it reports, ``stale`` or ``none``."""
    path = run_dir / f"results_{protocol}.json"
    if not path.is_file():
        return f"{protocol} none"
    epoch = json.loads(path.read_text())["epoch"]
    current = not metrics.empty and picked_epoch(protocol, metrics) == epoch
    return f"{protocol} {'epoch ' + str(epoch) if current else 'stale'}"


def override(key: str, value: Any) -> str:
    """``key=value`` as a config override that sets ``value``, quoted for a shell."""
    return shlex.quote(f"{key}={value if isinstance(value, str) else json.dumps(value)}")


def own_overrides(grid: Grid, row: str, seed: int, config: dict[str, Any]) -> list[str]:
    """The overrides that ``run ROW --seeds SEED`` needs to train the run whose saved config is ``config``."""
    row_config = load_config(grid.config_path(row), [*grid.rows[row].overrides, f"train.seed={seed}"]).to_dict()
    return [override(key, value) for key, (_, value) in config_changes(row_config, config).items()]


def run_status(grid: Grid, runs: Path, out: Path) -> pd.DataFrame:
    """One line per run trained under ``runs`` or archived in the report folder ``out``: epochs trained
    and archived against its schedule, whether its results are current, the command that comes next
    (with the overrides the run was trained with beyond its row's, and the folders that are not the grid's)
    and, where that command trains, about how long it takes at the pace of the run's last epochs."""
    check_report_folder(out)
    archive_dir = out / "runs"
    found = sorted({(path.parent.parent.name, path.parent.name) for base in (runs, archive_dir)
                    for path in base.glob("*/s*/config.yaml")})
    where = "" if runs == grid.runs else f" --runs {shlex.quote(str(runs))}"
    report_to = "" if out == grid.out else f" --out {shlex.quote(str(out))}"
    lines = []
    for row, seed_dir in found:
        here, stored, seed = runs / row / seed_dir, archive_dir / row / seed_dir, seed_dir[1:]
        trained, archived = _run_metrics(here), _run_metrics(stored)
        source, metrics = (here, trained) if trained is not None else (stored, archived)
        config = saved_config(source)
        planned = planned_epochs(config)
        takes = "-"
        if row not in grid.rows:
            results, next_step = [], "not a row of this script (renamed?): rename or delete it"
        else:
            results = [_result_state(source, protocol, metrics) for protocol in grid.rows[row].protocols]
            if planned and len(metrics) < planned:
                next_step = " ".join([f"run {row} --seeds {seed}{where}", *own_overrides(grid, row, int(seed), config)])
                takes = time_to_train(metrics, planned - len(metrics) if trained is not None else planned)
                if trained is None:
                    next_step += f" (starts again: no run directory under {runs})"
            elif trained is None:
                next_step = "done"
            elif any(state.endswith(("stale", "none")) for state in results):
                next_step = f"evaluate {row} --seeds {seed}{where}"
            elif archived is None or len(archived) != len(trained):
                next_step = f"report{where}{report_to}"
            else:
                next_step = "done"
        lines.append({"row": row, "seed": seed,
                      "trained": "-" if trained is None else f"{len(trained)}/{planned}",
                      "archived": "-" if archived is None else f"{len(archived)}/{planned}",
                      "results": ", ".join(results) or "-", "next": next_step, "takes": takes})
    return pd.DataFrame(lines, columns=["row", "seed", "trained", "archived", "results", "next", "takes"])
