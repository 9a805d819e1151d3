"""How much the validation and test QA share with training: why validation accuracy runs ahead of test.

    python experiments/split_overlap.py --data data/vqa_rad [--linked "VQA_RAD Dataset Public.json"]

For the validation and test QA of a prepared dataset it prints, per answer type, the share that has
a training QA on the same image with the same (normalised) answer. With ``--linked`` (VQA-RAD's raw
release) it also prints the share whose question is one wording of a question group that has a
wording in training: the raw file links a free-form question, its paraphrase and its templated frame
through ``qid_linked_id``; the prepared records carry one wording each, matched here by image and
question text. Nothing is trained; it takes seconds.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from infra.errors import UserError
from medvqa.data import PreparedDataset, VQARecord, normalize_answer

WORDINGS = ("question", "question_rephrase", "question_frame")


def _question_key(image_id: str, question: str) -> tuple[str, str]:
    return image_id, " ".join(question.lower().split())


def question_groups(raw_file: Path) -> dict[tuple[str, str], set[str]]:
    """(image, question text) -> the ``qid_linked_id`` groups that word it so."""
    try:
        items = json.loads(raw_file.read_text(encoding="utf8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {raw_file}: {error}") from None
    if not isinstance(items, list):
        raise UserError(f"{raw_file}: expected a list of QA objects (the raw VQA-RAD release)")
    groups: dict[tuple[str, str], set[str]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "qid_linked_id" not in item or "image_name" not in item:
            raise UserError(f"{raw_file}: item {i} has no qid_linked_id / image_name (not the raw VQA-RAD release)")
        for field in WORDINGS:
            text = item.get(field)
            if text and text != "NULL":
                groups.setdefault(_question_key(item["image_name"], text), set()).add(item["qid_linked_id"])
    return groups


def shares(records: list[VQARecord], has_overlap: Callable[[VQARecord], bool]) -> dict[str, float]:
    """Percent of ``records`` (all, open, closed) for which ``has_overlap`` holds."""
    out = {}
    for name, chosen in (("all", records), ("OPEN", [r for r in records if r.answer_type == "OPEN"]),
                         ("CLOSED", [r for r in records if r.answer_type == "CLOSED"])):
        out[name] = 100 * sum(map(has_overlap, chosen)) / len(chosen) if chosen else float("nan")
    return out


def overlap_table(ds: PreparedDataset, groups: dict[tuple[str, str], set[str]] | None = None) -> list[dict]:
    """One line per (split, kind of overlap) with the percent of QA that overlap training."""
    train = ds.records("train")
    seen_answers = {(r.image_id, normalize_answer(r.answer)) for r in train}
    if groups is not None:
        train_groups = set().union(*(groups.get(_question_key(r.image_id, r.question), set()) for r in train))
    lines = []
    for split in ("val", "test"):
        records = ds.records(split)
        if not records:
            continue
        same = shares(records, lambda r: (r.image_id, normalize_answer(r.answer)) in seen_answers)
        lines.append({"split": split, "QA": len(records), "overlap": "same image, same answer", **same})
        if groups is not None:  # a QA whose wording is not in the raw file counts as not linked: a lower bound
            linked = shares(records, lambda r: bool(groups.get(_question_key(r.image_id, r.question), set())
                                                    & train_groups))
            unmatched = sum(_question_key(r.image_id, r.question) not in groups for r in records)
            lines.append({"split": split, "QA": len(records),
                          "overlap": f"question group in train ({unmatched} QA unmatched)", **linked})
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a directory written by medvqa prepare")
    parser.add_argument("--linked", type=Path, help="VQA-RAD's raw release file (VQA_RAD Dataset Public.json)")
    args = parser.parse_args(argv)
    try:
        ds = PreparedDataset(args.data)
        lines = overlap_table(ds, question_groups(args.linked) if args.linked else None)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{ds.name}: share of QA with a training QA that overlaps it (training = the train split), %")
    print("| split | QA | overlap with training | all | open | closed |\n|---|---|---|---|---|---|")
    for line in lines:
        print(f"| {line['split']} | {line['QA']} | {line['overlap']} | {line['all']:.1f} | {line['OPEN']:.1f} "
              f"| {line['CLOSED']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
