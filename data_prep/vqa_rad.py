"""VQA-RAD readers: the raw release file and the community ``data_RAD`` split folder."""
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
    resolve_dir,
)
from infra.errors import UserError

RAW_FILE = "VQA_RAD Dataset Public.json"
RAW_IMAGES = "VQA_RAD Image Folder"
SPLIT_FIELDS = ("qid", "image_name", "question", "answer", "answer_type", "question_type", "phrase_type")
TEST_PHRASE_TYPES = ("test_freeform", "test_para")
LAYOUTS = ("auto", "split", "raw")


@dataclass(frozen=True)
class VQARadOptions:
    layout: str = option("auto", "source layout: the data_RAD split folder, the raw release, or auto", choices=LAYOUTS)


def _record(path: Path, index: int, item: dict, split: str, phrase_type: str) -> VQARecord:
    require_fields(path, index, item, SPLIT_FIELDS)
    try:
        answer_type = normalize_answer_type(item["answer_type"])
    except ValueError as error:
        raise UserError(f"{path}: record {index} (qid {item['qid']}): {error}") from None
    return VQARecord(
        qid=str(item["qid"]), image_id=str(item["image_name"]), question=str(item["question"]),
        answer=str(item["answer"]), answer_type=answer_type, question_type=str(item["question_type"]),
        split=split, phrase_type=phrase_type, organ=str(item.get("image_organ", "")),
        raw_answer_type=str(item["answer_type"]),
    )


def read_split_folder(root: Path) -> RawDataset:
    """``data_RAD/``: ``trainset.json``, ``testset.json``, ``images/`` and optionally ``imgid2idx.json``."""
    records = []
    for split, filename in (("train", "trainset.json"), ("test", "testset.json")):
        path = root / filename
        items = require_list(path, read_json(path))
        if not items:
            raise UserError(f"{path}: split '{split}' has no records")
        records += [_record(path, i, item, split, str(item.get("phrase_type", ""))) for i, item in enumerate(items)]
    order_path = root / "imgid2idx.json"
    image_order = None
    if order_path.is_file():
        index = read_json(order_path)
        image_order = sorted(index, key=index.get)
    return RawDataset("vqa_rad", records, image_opener(resolve_dir(root / "images")), image_order, str(root))


def read_raw_release(root: Path) -> RawDataset:
    """The original release: test = phrase types ``test_freeform`` + ``test_para``, train = the rest."""
    path = root / RAW_FILE
    items = require_list(path, read_json(path))
    records = []
    for i, item in enumerate(items):
        require_fields(path, i, item, SPLIT_FIELDS)
        phrase = str(item["phrase_type"])
        split = "test" if phrase in TEST_PHRASE_TYPES else "train"
        records.append(_record(path, i, item, split, phrase.removeprefix("test_")))
    for split in ("train", "test"):
        if not any(r.split == split for r in records):
            raise UserError(f"{path}: split '{split}' has no records")
    return RawDataset("vqa_rad", records, image_opener(resolve_dir(root / RAW_IMAGES)), None, str(root))


def read(source: Path, layout: str = "auto") -> RawDataset:
    """Pick the layout: the split folder (``trainset.json``, also found as ``data_RAD/``) or the raw release."""
    if layout not in LAYOUTS:
        raise UserError(f"unknown VQA-RAD layout {layout!r}: choose from {', '.join(LAYOUTS)}")
    split_root = next((p for p in (source, source / "data_RAD") if (p / "trainset.json").is_file()), None)
    if layout in ("auto", "split") and split_root is not None:
        return read_split_folder(split_root)
    if layout in ("auto", "raw") and (source / RAW_FILE).is_file():
        return read_raw_release(source)
    wanted = {"auto": f"trainset.json or '{RAW_FILE}'", "split": "trainset.json", "raw": f"'{RAW_FILE}'"}
    raise UserError(f"{source}: no VQA-RAD {layout} layout found (expected {wanted[layout]})")


@register_dataset("vqa-rad", VQARadOptions, published_answer_vocab="train")
def read_source(options: VQARadOptions, source: Path | None) -> RawDataset:
    return read(require_source(source), options.layout)
