"""The archive of a report: the light files of every evaluated run, ``<archive>/<row>/s<seed>/``,
each replaced only by a run of the same config that trained at least as long.

The light files are the config, ``metrics.csv``, the result of each protocol and, of its predictions, the
columns the paired tests read (``predictions_<protocol>.csv``, a few KB): enough to rebuild the tables
and to compare two archived rows question by question."""
from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from infra.errors import UserError
from medvqa.config import run_identity, upgrade_run_config
from medvqa.report.runs import QUESTION_COLUMNS
from medvqa.reproduce.results import evaluated_runs, saved_config

ARCHIVED = ("config.yaml", "metrics.csv", "results_*.json")
PREDICTIONS = "predictions_*.csv"  # archived as their QUESTION_COLUMNS


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """A config mapping of either layout as dotted settings of today's (``model.encoders.maml.weights``),
    runtime settings aside (``run_identity``)."""
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk(run_identity(upgrade_run_config(config)), "")
    return flat


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Setting -> (old value, new value) for the settings both configs hold with different values.

    Settings only one of them holds are passed over, so archived runs stay comparable when keys are added later.
    """
    a, b = settings(old), settings(new)
    return {key: (a[key], b[key]) for key in sorted(a.keys() & b.keys()) if a[key] != b[key]}


def check_replaces(run_dir: Path, target: Path) -> None:
    """Refuse ``run_dir`` as the new copy of the run archived in ``target``: another config, or fewer epochs."""
    if changes := config_changes(saved_config(target), saved_config(run_dir)):
        differences = "; ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())
        raise UserError(f"{run_dir} is another run than the one archived in {target} (its config differs: "
                        f"{differences}): report it to another --out, or delete {target} to replace it")
    trained, stored = (len(pd.read_csv(d / "metrics.csv")) for d in (run_dir, target))
    if trained < stored:
        raise UserError(f"{run_dir} has trained {trained} epochs, its archived copy {target} {stored}: "
                        f"train it on before reporting it, or delete {target} to go back to {trained}")


def check_report_folder(out: Path) -> None:
    """Refuse ``out`` as a report's folder where it holds no archive of its own but archives in its
    subfolders (``out/cpu/runs``, ``out/h100/runs``: one per machine): a report there would start
    another archive beside them."""
    archives = sorted(shlex.quote(str(folder.parent)) for folder in out.glob("*/runs") if folder.is_dir())
    if archives and not (out / "runs").is_dir():
        raise UserError(f"{out} is not an archive but holds {len(archives)} in its subfolders "
                        f"({', '.join(archives)}): pass the one of this machine as --out")


def copy_question_columns(predictions: Path, target: Path) -> None:
    """Write the ``QUESTION_COLUMNS`` of ``predictions`` to ``target``, their text unchanged."""
    frame = pd.read_csv(predictions, dtype=str, keep_default_na=False)
    if missing := [column for column in QUESTION_COLUMNS if column not in frame.columns]:
        raise UserError(f"{predictions}: columns {missing} missing: evaluate the run again "
                        f"(medvqa evaluate --run {predictions.parent})")
    frame[list(QUESTION_COLUMNS)].to_csv(target, index=False)


def archive(runs: Path, archive_dir: Path) -> int:
    """Copy the light files of every evaluated run under ``runs`` into ``archive_dir``; returns how many.

    Each archived run is replaced whole (stale protocol files go) and only once its copy is complete;
    nothing is copied where one run would replace an archived run of another config (say a run with
    ``train.epochs=200`` over the 20-epoch run of its row and seed) or one that trained longer.
    """
    if archive_dir.resolve() in (runs.resolve(), *runs.resolve().parents):
        raise UserError(f"--runs {runs} is inside the archive {archive_dir}: archiving would replace the runs "
                        "with their light files; pass the folder the runs were trained in")
    for leftover in [*archive_dir.glob("*/.s*.partial"), *archive_dir.glob("*/.s*.retired")]:
        target = leftover.with_name(leftover.name[1:].rsplit(".", 1)[0])
        if leftover.suffix == ".retired" and not target.exists():  # a report stopped between its two renames
            leftover.rename(target)
        else:  # an unfinished copy, or a replaced run whose new copy is complete
            shutil.rmtree(leftover)
    targets = {run_dir: archive_dir / run_dir.parent.name / run_dir.name for run_dir in evaluated_runs(runs)}
    for run_dir, target in targets.items():
        if (target / "config.yaml").is_file():
            check_replaces(run_dir, target)
    for run_dir, target in targets.items():
        staging, retired = (target.with_name(f".{target.name}.{kind}") for kind in ("partial", "retired"))
        staging.mkdir(parents=True)
        for pattern in ARCHIVED:
            for path in run_dir.glob(pattern):
                shutil.copy2(path, staging / path.name)
        for path in run_dir.glob(PREDICTIONS):
            copy_question_columns(path, staging / path.name)
        if target.exists():
            target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    return len(targets)
