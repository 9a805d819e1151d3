"""Caption banks: the captions a retrieval captioner chooses from, read without needing their images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.errors import UserError
from infra.files import read_text
from pubmedclip.data import CAPTION_COLUMNS, _pick, _read_rows, find_shards, iter_shard_samples

ID_COLUMNS = ("id", "roco_id", "image_id")


@dataclass(frozen=True)
class Caption:
    """One caption of a bank and its id (a ROCO id, a table's id column, or the row number)."""

    id: str
    text: str


def _roco_captions(file: Path) -> list[Caption]:
    captions = []
    for number, line in enumerate(read_text(file).splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise UserError(f"{file}:{number}: expected 'ID<TAB>caption', got {line[:60]!r}")
        rid, text = line.split("\t", 1)
        captions.append(Caption(rid.strip(), text.strip()))
    return captions


def read_captions(spec: str | Path) -> list[Caption]:
    """Captions of a ROCO folder or ``captions.txt``, of a CSV/TSV/JSONL table with a caption column, or of a
    folder of WebDataset shards (``pubmedclip pmc-oa extract`` output).

    Blank captions are dropped; a source with none left is a one-line error, as are duplicate ids.
    """
    path = Path(spec)
    if find_shards(path):
        captions = [Caption(key, text.strip()) for shard in find_shards(path) for key, _, text in iter_shard_samples(shard)]
    elif path.is_dir():
        folder = next((f for f in (path, path / "radiology") if (f / "captions.txt").is_file()), None)
        if folder is None:
            raise UserError(f"{path} has no captions.txt (ROCO layout) and is not a caption file")
        captions = _roco_captions(folder / "captions.txt")
    elif not path.is_file():
        raise UserError(f"caption file not found: {path}")
    elif path.suffix == ".txt":
        captions = _roco_captions(path)
    elif path.suffix in (".csv", ".tsv", ".tab", ".jsonl"):
        rows = _read_rows(path)
        column = _pick(list(rows[0]), CAPTION_COLUMNS, path, "caption") if rows else None
        id_column = next((c for c in ID_COLUMNS if rows and c in rows[0]), None)
        captions = [Caption(str(row[id_column]) if id_column else str(i), str(row[column] or "").strip())
                    for i, row in enumerate(rows)]
    else:
        raise UserError(f"{path}: unknown caption file type (use a ROCO folder, captions.txt, .csv, .tsv or .jsonl)")
    captions = [c for c in captions if c.text]
    if not captions:
        raise UserError(f"{path}: no captions")
    seen: set[str] = set()
    for caption in captions:
        if caption.id in seen:
            raise UserError(f"{path}: caption id {caption.id!r} occurs twice")
        seen.add(caption.id)
    return captions
