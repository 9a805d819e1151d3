"""SLAKE 1.0 reader: ``train.json``, ``validate.json``, ``test.json`` and ``imgs/``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data_prep.records import VQARecord, normalize_answer_type
from data_prep.source import (
    RawDataset,
    image_opener,
    option,
    read_json,
    register_dataset,
    require_fields,
    require_list,
    require_source,
)
from infra.errors import UserError

SPLIT_FILES = {"train": "train.json", "val": "validate.json", "test": "test.json"}
FIELDS = ("qid", "img_name", "question", "answer", "answer_type", "q_lang", "content_type")
IMAGES = "imgs"


@dataclass(frozen=True)
class SlakeOptions:
    language: str = option("en", "q_lang of the questions kept: en, zh or all")


def read(source: Path, language: str = "en") -> RawDataset:
    """English by default; ``language`` selects another ``q_lang`` (``zh``) or ``all``. Records keep the
    file order; ``organ`` is the file's ``location``. ``RawDataset.source`` is the folder read."""
    root = next((p for p in (source, source / "Slake1.0") if (p / "train.json").is_file()), source)
    records = []
    for split, filename in SPLIT_FILES.items():
        path = root / filename
        items = require_list(path, read_json(path))
        kept = 0
        for i, item in enumerate(items):
            require_fields(path, i, item, FIELDS)
            if language != "all" and item["q_lang"] != language:
                continue
            try:
                answer_type = normalize_answer_type(item["answer_type"])
            except ValueError as error:
                raise UserError(f"{path}: record {i} (qid {item['qid']}): {error}") from None
            records.append(VQARecord(
                qid=str(item["qid"]), image_id=str(item["img_name"]), question=str(item["question"]),
                answer=str(item["answer"]), answer_type=answer_type, question_type=str(item["content_type"]),
                split=split, organ=str(item.get("location", "")), modality=str(item.get("modality", "")),
                raw_answer_type=str(item["answer_type"]),
            ))
            kept += 1
        if kept == 0:
            raise UserError(f"{path}: split '{split}' has no records with q_lang '{language}'")
    return RawDataset("slake", records, image_opener(root / IMAGES), None, str(root))


@register_dataset("slake", SlakeOptions, published_answer_vocab="train+test")
def read_source(options: SlakeOptions, source: Path | None) -> RawDataset:
    return read(require_source(source), options.language)
