"""What a dataset reader returns, how it registers, and careful readers for the raw files.

A dataset is one module: an options dataclass (fields made with ``option``) and a reader
``fn(options, source) -> RawDataset`` registered with ``@register_dataset(name, Options)``.
``data_prep.datasets`` imports the built-in ones; a plug-in module registers its own the same way.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from data_prep.records import VQARecord
from infra.errors import UserError
from infra.files import read_text
from infra.registry import Registry


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


Reader = Callable[..., RawDataset]
DATASETS: Registry[RawDataset] = Registry("dataset")


@dataclass(frozen=True)
class DatasetFacts:
    """What evaluation needs to know about a dataset beyond its records.

    ``prepared_name``: the ``name`` its reader gives the data (``summary.json``'s ``dataset``);
    ``published_answer_vocab``: the answer vocabulary its published runs used (``train``, ``train+test``).
    """

    prepared_name: str
    published_answer_vocab: str | None = None


FACTS: dict[str, DatasetFacts] = {}


def registered_name(prepared_name: str) -> str | None:
    """The registry name (``vqa-rad``) of a prepared dataset's ``name`` (``vqa_rad``), or None."""
    return next((name for name, known in FACTS.items() if known.prepared_name == prepared_name), None)


def register_dataset(name: str, options: type, prepared_name: str | None = None,
                     published_answer_vocab: str | None = None) -> Callable[[Reader], Reader]:
    """Decorator: make ``reader(options_instance, source=Path | None)`` the dataset ``name`` of
    ``medvqa prepare``; each field of the ``options`` dataclass becomes one of its flags."""
    prepared_name = prepared_name or name.replace("-", "_")
    holder = registered_name(prepared_name)
    if holder is not None:
        raise ValueError(f"{prepared_name!r} is already the prepared name of dataset {holder!r}")
    register = DATASETS.register(name, settings=options)

    def add(reader: Reader) -> Reader:
        register(reader)
        FACTS[name] = DatasetFacts(prepared_name, published_answer_vocab)
        return reader

    return add


def option(default: Any, description: str, aliases: tuple[str, ...] = (), choices: tuple[str, ...] = ()) -> Any:
    """A field of a dataset's options: flag ``--<field-name>`` (plus ``aliases``), its help and choices."""
    return field(default=default, metadata={"help": description, "aliases": aliases, "choices": choices})


def require_source(source: Path | None) -> Path:
    """The ``--source`` folder of a dataset read from disk."""
    if source is None:
        raise UserError("--source PATH is required for this dataset")
    if not source.exists():
        raise UserError(f"source not found: {source}")
    return source


def read_json(path: Path) -> Any:
    """Parse a JSON file (``read_text`` encodings); a missing or malformed file is a one-line UserError naming it."""
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    try:
        return json.loads(read_text(path))
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
        target = (path.parent / read_text(path).strip()).resolve()
        if target.is_dir():
            return target
    return path
