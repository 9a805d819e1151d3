"""Accuracy tables from a predictions frame: open / closed / overall and breakdowns.

A predictions frame has one row per question with at least ``answer`` (normalised gold),
``prediction`` (from evaluation also its softmax ``probability``), ``answer_type`` (gold, CLOSED/OPEN)
and ``route`` (the branch the question was answered by: gold type, or the type classifier's
prediction). Accuracy is exact match of the normalised answer strings, which equals the published
score for one-hot targets.
"""
from __future__ import annotations

import pandas as pd

from medvqa.data import VQARecord, normalize_answer


def prediction_frame(records: list[VQARecord], predictions: list[str], routes: list[str],
                     answer_set: set[str], probabilities: list[float] | None = None) -> pd.DataFrame:
    """One row per record: ids, gold fields, the prediction (with its probability, where given) and
    whether it is correct."""
    gold = [normalize_answer(r.answer) for r in records]
    return pd.DataFrame({
        "qid": [r.qid for r in records],
        "image_id": [r.image_id for r in records],
        "question": [r.question for r in records],
        "answer": gold,
        "prediction": predictions,
        **({"probability": probabilities} if probabilities is not None else {}),
        "correct": [g == p for g, p in zip(gold, predictions)],
        "answer_type": [r.answer_type for r in records],
        "route": routes,
        "answerable": [g in answer_set for g in gold],
        "question_type": [r.question_type for r in records],
        "phrase_type": [r.phrase_type for r in records],
        "organ": [r.organ for r in records],
        "modality": [r.modality for r in records],
    })


def _percent(correct: pd.Series) -> float | None:
    return round(100.0 * float(correct.mean()), 2) if len(correct) else None


def accuracy(frame: pd.DataFrame, by: str = "route") -> dict[str, float | int | None]:
    """Open, closed and overall accuracy (percent); open/closed denominators count rows by ``by``."""
    closed, opened = frame[frame[by] == "CLOSED"], frame[frame[by] == "OPEN"]
    return {"open": _percent(opened["correct"]), "closed": _percent(closed["correct"]),
            "overall": _percent(frame["correct"]), "n_open": len(opened), "n_closed": len(closed),
            "n": len(frame)}


def breakdown(frame: pd.DataFrame, column: str) -> dict[str, dict[str, float | int | None]]:
    """Accuracy per value of ``column``; comma-joined question types count toward each type."""
    values = frame[column].fillna("").astype(str)
    if column == "question_type":
        values = values.str.split(",")
    exploded = frame.assign(_key=values).explode("_key")
    exploded["_key"] = exploded["_key"].str.strip()
    return {key: accuracy(group) for key, group in exploded.groupby("_key") if key}


def summarize(frame: pd.DataFrame) -> dict:
    """The full report: routed open/closed/overall, gold-type accuracy, and breakdowns."""
    summary = accuracy(frame, by="route")
    summary["gold_type"] = accuracy(frame, by="answer_type")
    summary["n_unanswerable"] = int((~frame["answerable"]).sum())
    summary["n_misrouted"] = int((frame["route"] != frame["answer_type"]).sum())
    for column, name in [("phrase_type", "phrase_type"), ("question_type", "question_type"),
                         ("organ", "organ"), ("modality", "modality")]:
        table = breakdown(frame, column)
        if table:
            summary[f"by_{name}"] = table
    return summary
