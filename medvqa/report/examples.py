"""Example predictions for the report: questions with their image, and the questions two encoders disagree on.

Thumbnails come from the largest image cache of the prepared dataset at the run's ``data.root``
(the prepared data keeps decoded images, not the source files), embedded as ``data:`` URIs.
"""
from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from infra.errors import UserError
from medvqa.data import PreparedDataset
from medvqa.report.runs import EvaluatedRun

THUMBNAIL = 112  # pixels, longest side


@dataclass(frozen=True)
class Answer:
    encoder: str
    seed: int
    prediction: str
    probability: float | None  # softmax probability of the prediction; None for runs evaluated before it was kept
    correct: bool


@dataclass(frozen=True)
class Example:
    qid: str
    image_id: str
    question: str
    gold: str
    answers: tuple[Answer, ...]


def _spec_size(key: str) -> int:
    digits = re.sub(r"\D", "", key)
    return int(digits) if digits else 0


@lru_cache(maxsize=8)
def _prepared(root: str) -> PreparedDataset | None:
    try:
        return PreparedDataset(root)
    except UserError:
        return None


def thumbnail(data_root: str, image_id: str) -> str | None:
    """A PNG ``data:`` URI of ``image_id`` from the largest cache at ``data_root``; None where it is not there."""
    ds = _prepared(str(Path(data_root).resolve())) if data_root else None
    if ds is None or image_id not in ds.image_ids:
        return None
    spec = max(ds.image_specs, key=lambda key: (_spec_size(key), key.startswith("rgb")))
    image = Image.fromarray(np.asarray(ds.images(spec)[ds.image_row(image_id)]))
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _answer(encoder: str, run: EvaluatedRun, row: int) -> Answer:
    record = run.predictions.iloc[row]
    probability = record.get("probability")
    return Answer(encoder, run.seed, str(record["prediction"]),
                  None if probability is None or np.isnan(probability) else float(probability), bool(record["correct"]))


def _example(reference: EvaluatedRun, row: int, answers: Sequence[Answer]) -> Example:
    record = reference.predictions.iloc[row]
    return Example(str(record["qid"]), str(record["image_id"]), str(record["question"]), str(record["answer"]),
                   tuple(answers))


def matched_run(runs: Sequence[EvaluatedRun], seed: int) -> EvaluatedRun:
    """The run of ``seed``, else the first run."""
    return next((run for run in runs if run.seed == seed), runs[0])


def _balanced(first: np.ndarray, second: np.ndarray, count: int) -> list[int]:
    """Up to ``count`` rows, half from each list where both have enough, in file order."""
    take_first = min(len(first), max(count // 2, count - len(second)))
    return sorted([*first[:take_first], *second[: count - take_first]])


def example_predictions(encoders: Sequence[tuple[str, Sequence[EvaluatedRun]]], count: int = 6) -> list[Example]:
    """Up to ``count`` questions, half answered right and half wrong by the first encoder's first seed where
    it has both, in test-file order, each with every encoder's answer at that seed (its first seed where it
    lacks that one)."""
    reference = encoders[0][1][0]
    correct = reference.correct()
    rows = _balanced(np.flatnonzero(correct), np.flatnonzero(~correct), count)
    chosen = [matched_run(runs, reference.seed) for _, runs in encoders]
    return [_example(reference, row, [_answer(name, run, row) for (name, _), run in zip(encoders, chosen)])
            for row in rows]


def disagreements(baseline: tuple[str, EvaluatedRun], other: tuple[str, EvaluatedRun],
                  count: int = 6) -> tuple[list[Example], int, int]:
    """Questions exactly one of two runs answered correctly: up to ``count`` examples, half of each kind
    where there are enough, and how many questions of each kind there are (other only, baseline only)."""
    (base_name, base_run), (other_name, other_run) = baseline, other
    base, mine = base_run.correct(), other_run.correct()
    other_only, base_only = np.flatnonzero(mine & ~base), np.flatnonzero(base & ~mine)
    examples = [_example(base_run, row, [_answer(base_name, base_run, row), _answer(other_name, other_run, row)])
                for row in _balanced(other_only, base_only, count)]
    return examples, len(other_only), len(base_only)
