"""The published MEVF/QCR file set, so existing forks can read prepared data.

``dictionary.pkl``, ``glove6b_init_300d.npy``, ``imgid2idx.json`` and ``cache/*.pkl`` with the
published conventions: last-word unknown mapping, answer sets over the official train file with the
unstripped ``answer_type == "CLOSED"`` comparison, integer qids where the source has them.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np

from data_prep.records import VQARecord
from data_prep.text import AnswerVocab


def _qid(record: VQARecord) -> int | str:
    return int(record.qid) if record.qid.isdigit() else record.qid


def targets(records: list[VQARecord], vocab: AnswerVocab, open_close: bool) -> list[dict]:
    """One target per record in order: ``labels``/``scores`` lists, empty when unanswerable.

    With ``open_close``, labels index the record's branch set and ``type`` is 0 closed, 1 open,
    2 when the answer is not in its branch's set.
    """
    out = []
    for record in records:
        branch = vocab.branch_of(record) if open_close else "all"
        label = vocab.label(record.answer, branch)
        entry = {"qid": _qid(record), "image_name": record.image_id,
                 "labels": [] if label is None else [label], "scores": [] if label is None else [1.0]}
        if open_close:
            entry["type"] = 2 if label is None else (0 if branch == "closed" else 1)
        out.append(entry)
    return out


def _dump(obj: object, path: Path) -> None:
    with path.open("wb") as handle:
        pickle.dump(obj, handle)


def write_legacy_files(out: Path, words: list[str], glove: np.ndarray, train: list[VQARecord],
                       test: list[VQARecord], image_ids: list[str]) -> None:
    """Write the published file set under ``out`` (``train`` = the official training file)."""
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    _dump([{w: i for i, w in enumerate(words)}, list(words)], out / "dictionary.pkl")
    np.save(out / "glove6b_init_300d.npy", glove.astype(np.float32))
    (out / "imgid2idx.json").write_text(json.dumps({image: row for row, image in enumerate(image_ids)}))
    vocab = AnswerVocab.build(train, source="train", closed_by="raw-type")
    for prefix, branch in (("trainval", "all"), ("close", "closed"), ("open", "open")):
        answers = getattr(vocab, branch)
        _dump({a: i for i, a in enumerate(answers)}, cache / f"{prefix}_ans2label.pkl")
        _dump(list(answers), cache / f"{prefix}_label2ans.pkl")
    for split, records in (("train", train), ("test", test)):
        _dump(targets(records, vocab, open_close=False), cache / f"{split}_target.pkl")
        _dump(targets(records, vocab, open_close=True), cache / f"{split}_openclose_target.pkl")
