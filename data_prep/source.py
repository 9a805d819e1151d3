"""What a dataset reader returns, and careful readers for the raw files."""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from data_prep.records import VQARecord
from infra.errors import UserError


@dataclass
class RawDataset:
    """Records of one dataset plus a way to open each image once.

    ``records`` carry split ``train``/``val``/``test``; a dataset without an official validation
    split (VQA-RAD) gets one held out of train by ``prepare``. ``image_order`` fixes the rows of the
    image caches (for example the published ``imgid2idx.json``); otherwise images are sorted by id.
    """

    name: str
    records: list[VQARecord]
    open_image: Callable[[str], Image.Image]
    image_order: list[str] | None = None
    source: str = ""
    captions: dict[str, str] | None = None


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing or malformed file is a one-line UserError naming it."""
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        with path.open(encoding="utf8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: malformed JSON at line {error.lineno} column {error.colno}: {error.msg}") from None


def require_fields(path: Path, index: int, item: Any, fields: tuple[str, ...]) -> None:
    """Fail with the file, the record position and the missing field."""
    if not isinstance(item, dict):
        raise UserError(f"{path}: record {index} is a {type(item).__name__}, expected an object")
    for name in fields:
        if name not in item:
            qid = item.get("qid", "?")
            raise UserError(f"{path}: record {index} (qid {qid}) lacks field '{name}'")


def require_list(path: Path, data: Any) -> list:
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of QA records, found {type(data).__name__}")
    return data


def image_opener(image_dir: Path) -> Callable[[str], Image.Image]:
    """Open ``image_dir / image_id`` fully decoded; missing or corrupt files raise UserError."""

    def open_image(image_id: str) -> Image.Image:
        path = image_dir / image_id
        if not path.is_file():
            raise UserError(f"image file not found: {path}")
        try:
            with Image.open(path) as image:
                image.load()
                return image.copy()
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise UserError(f"cannot decode image {path}: {error}") from None

    return open_image


def resolve_dir(path: Path) -> Path:
    """Follow a directory link stored as a small text file (how some checkouts keep symlinks)."""
    if path.is_file() and path.stat().st_size < 4096:
        target = (path.parent / path.read_text(encoding="utf8").strip()).resolve()
        if target.is_dir():
            return target
    return path
