"""Evaluated run directories as the statistics and the report read them, and the rules that pair them.

A run is evaluated under a protocol when it holds ``results_<protocol>.json`` and
``predictions_<protocol>.csv`` (``medvqa evaluate --run RUN --protocol P`` writes both). Runs are
paired by seed (``train.seed`` of their ``config.yaml``) and questions by ``qid``; runs evaluated on
different test questions are never compared.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from infra.config import read_yaml_mapping
from infra.errors import UserError

METRICS = ("open", "closed", "overall")
QUESTION_COLUMNS = ("qid", "answer", "correct", "answer_type", "route")  # of predictions_<protocol>.csv, read here


@dataclass(frozen=True)
class EvaluatedRun:
    path: Path
    seed: int
    protocol: str
    results: dict  # results_<protocol>.json
    predictions: pd.DataFrame  # predictions_<protocol>.csv, one row per test question, in file order
    history: list[dict]  # metrics.json: one row per epoch (empty when the file is missing)
    data_root: str  # data.root of the run's config, as written

    @property
    def qids(self) -> list[str]:
        return self.predictions["qid"].tolist()

    def correct(self) -> np.ndarray:
        """``[questions]`` bool, in file order."""
        return self.predictions["correct"].to_numpy(dtype=bool)

    def routed(self, metric: str) -> np.ndarray:
        """``[questions]`` bool: the questions ``metric`` (open / closed / overall) counts, by route as
        ``results_<protocol>.json`` counts them."""
        return _subset(self.predictions["route"], metric)

    def gold(self, metric: str) -> np.ndarray:
        """``[questions]`` bool: the questions of ``metric`` by gold answer type (the same for every run)."""
        return _subset(self.predictions["answer_type"], metric)


def _subset(types: pd.Series, metric: str) -> np.ndarray:
    if metric == "overall":
        return np.ones(len(types), dtype=bool)
    return (types.astype(str).str.strip().str.upper() == metric.upper()).to_numpy()


def load_run(path: str | Path, protocol: str = "sound") -> EvaluatedRun:
    """Read one evaluated run; a missing file is a one-line error that says how to make it."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise UserError(f"{path} is not a run directory (no config.yaml)")
    results_path, predictions_path = path / f"results_{protocol}.json", path / f"predictions_{protocol}.csv"
    for needed in (results_path, predictions_path):
        if not needed.is_file():
            raise UserError(f"{path} is not evaluated under protocol {protocol} (no {needed.name}): "
                            f"run medvqa evaluate --run {path} --protocol {protocol}")
    config = read_yaml_mapping(path / "config.yaml", allow_empty=False)
    seed = (config.get("train") or {}).get("seed")
    if not isinstance(seed, int):
        raise UserError(f"{path / 'config.yaml'}: train.seed is missing or not an integer")
    predictions = pd.read_csv(predictions_path, dtype={"qid": str, "image_id": str, "answer": str, "prediction": str},
                              keep_default_na=False, na_values={"probability": [""]})
    missing = set(QUESTION_COLUMNS) - set(predictions.columns)
    if missing:
        raise UserError(f"{predictions_path}: columns {sorted(missing)} missing (evaluate the run again)")
    if predictions["qid"].duplicated().any():
        raise UserError(f"{predictions_path}: qid {predictions['qid'][predictions['qid'].duplicated()].iloc[0]!r} "
                        "occurs twice")
    predictions["correct"] = predictions["correct"].astype(str).str.lower().eq("true")
    metrics_path = path / "metrics.json"
    history = json.loads(metrics_path.read_text()) if metrics_path.is_file() else []
    return EvaluatedRun(path, seed, protocol, json.loads(results_path.read_text()), predictions, history,
                        str((config.get("data") or {}).get("root", "")))


def load_runs(paths: Sequence[str | Path], protocol: str = "sound") -> list[EvaluatedRun]:
    """Read runs of one set (e.g. the seeds of one setting); two runs of the same seed are refused."""
    runs = [load_run(path, protocol) for path in paths]
    seen: dict[int, Path] = {}
    for run in runs:
        if run.seed in seen:
            raise UserError(f"{run.path} and {seen[run.seed]} are both seed {run.seed}: give one run per seed")
        seen[run.seed] = run.path
    return runs


def check_same_questions(reference: EvaluatedRun, other: EvaluatedRun) -> None:
    """Refuse ``other`` unless it answered the test questions of ``reference``, in the same order and with
    the same gold answers."""
    if other.qids == reference.qids and other.predictions["answer"].tolist() == reference.predictions["answer"].tolist():
        return
    common = len(set(other.qids) & set(reference.qids))
    raise UserError(f"{other.path} was evaluated on other test questions than {reference.path} "
                    f"({len(other.qids)} and {len(reference.qids)} questions, {common} qids in common): "
                    "compare runs of the same dataset and protocol")


def pair_by_seed(a: Sequence[EvaluatedRun], b: Sequence[EvaluatedRun], *,
                 pair_lone_runs: bool = False) -> list[tuple[EvaluatedRun, EvaluatedRun]]:
    """Runs of ``a`` and ``b`` with the same seed, by seed; with ``pair_lone_runs``, one run on each side pairs
    whatever its seed (``medvqa compare RUN_A RUN_B``).

    An empty list where the runs share no seed (the caller says so).
    """
    if pair_lone_runs and len(a) == 1 and len(b) == 1:
        return [(a[0], b[0])]
    by_seed = {run.seed: run for run in b}
    return [(run, by_seed[run.seed]) for run in sorted(a, key=lambda r: r.seed) if run.seed in by_seed]
