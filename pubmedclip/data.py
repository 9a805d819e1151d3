"""Image-caption pairs and labelled images: readers for ROCO, PubMedCLIP CSV, generic CSV/JSONL and SLAKE
(whose question files ``data_prep.slake`` reads).

Readers return plain records and check the layout eagerly (a malformed file or a missing image directory is a
one-line ``UserError``). Individual missing images are dropped and counted before training; images that fail
to decode are skipped by the loader and counted per batch, so an epoch never stops on a bad file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

from data_prep import slake
from infra.errors import UserError
from infra.files import read_text
from pubmedclip.models import token_lengths

IMAGE_COLUMNS = ("image", "filepath", "image_path", "path", "file", "name")
CAPTION_COLUMNS = ("caption", "title", "text")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")


@dataclass(frozen=True)
class Pair:
    """One image and its caption."""

    image: Path
    caption: str
    id: str


@dataclass
class LabelledImage:
    """One image with named labels (for example modality and organ) and the split it belongs to."""

    image: Path
    labels: dict[str, str]
    split: str = ""


@dataclass
class DataSummary:
    """What was read, dropped and truncated; written to the run directory."""

    pairs: int = 0
    missing_images: int = 0
    corrupt_images: int = 0
    truncated_captions: int = 0
    missing_examples: list[str] = field(default_factory=list)


def _image_dir(path: Path) -> Path:
    if not path.is_dir():
        raise UserError(f"image directory not found: {path}")
    return path


def _read_roco(folder: Path, image_root: Path | None) -> list[Pair]:
    """ROCO official layout: ``captions.txt`` (``ID<TAB>caption``), ``dlinks.txt`` (3rd column = file), ``images/``."""
    images = _image_dir(image_root or folder / "images")
    names: dict[str, str] = {}
    if (folder / "dlinks.txt").is_file():
        for line in read_text(folder / "dlinks.txt").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                names[parts[0].strip()] = parts[2].strip()
    pairs = []
    for number, line in enumerate(read_text(folder / "captions.txt").splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise UserError(f"{folder / 'captions.txt'}:{number}: expected 'ID<TAB>caption', got {line[:60]!r}")
        rid, caption = line.split("\t", 1)
        rid = rid.strip()
        pairs.append(Pair(images / names.get(rid, f"{rid}.jpg"), caption.strip(), rid))
    return pairs


def _pick(columns: Sequence[str], wanted: Sequence[str], path: Path, what: str) -> str:
    for name in wanted:
        if name in columns:
            return name
    raise UserError(f"{path}: no {what} column (looked for {', '.join(wanted)}; found {', '.join(columns)})")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (comma or tab separated) or JSONL file (``read_text`` encodings)."""
    text = read_text(path)
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}:{number}: not a JSON object ({exc.msg})") from exc
        return rows
    delimiter = "\t" if path.suffix in (".tsv", ".tab") or "\t" in text.split("\n", 1)[0] else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    rows = list(reader)
    if not reader.fieldnames or any(None in row for row in rows):
        bad = next((i + 2 for i, row in enumerate(rows) if None in row), 1)
        raise UserError(f"{path}:{bad}: malformed row (more fields than the header has)")
    return rows


def _read_table(path: Path, image_root: Path | None) -> list[Pair]:
    """PubMedCLIP CSV (``id,name,caption`` + ``radiology/images``) or a generic CSV/JSONL of image and caption."""
    rows = _read_rows(path)
    if not rows:
        raise UserError(f"{path}: no rows")
    columns = list(rows[0])
    image_col = _pick(columns, IMAGE_COLUMNS, path, "image")
    caption_col = _pick(columns, CAPTION_COLUMNS, path, "caption")
    if image_root is None:
        pubmedclip_layout = {"id", "name", "caption"} <= set(columns) and (
            path.parent / "radiology" / "images"
        ).is_dir()
        image_root = path.parent / "radiology" / "images" if pubmedclip_layout else path.parent
    root = _image_dir(image_root)
    return [
        Pair(root / str(row[image_col]), str(row[caption_col]).strip(), str(row.get("id", i)))
        for i, row in enumerate(rows)
    ]


def read_pairs(spec: str | Path, image_root: str | Path | None = None) -> list[Pair]:
    """Image-caption pairs from a ROCO folder (``captions.txt``), a CSV/TSV or a JSONL file, or a folder of
    WebDataset shards (``pubmedclip pmc-oa extract`` output; its images unpacked once, see ``unpack_shards``)."""
    path = Path(spec)
    root = Path(image_root) if image_root else None
    if path.is_dir():
        if find_shards(path):
            return unpack_shards(path)
        for folder in (path, path / "radiology"):
            if (folder / "captions.txt").is_file():
                return _read_roco(folder, root)
        raise UserError(f"{path} has no captions.txt (ROCO layout) and is not a caption file")
    if not path.is_file():
        raise UserError(f"caption file not found: {path}")
    if path.suffix not in (".csv", ".tsv", ".tab", ".jsonl"):
        raise UserError(f"{path}: unknown caption file type (use a ROCO folder, .csv, .tsv or .jsonl)")
    return _read_table(path, root)


def drop_missing(pairs: list[Pair], summary: DataSummary) -> list[Pair]:
    """Pairs whose image file exists; the rest are counted in ``summary``."""
    kept = [p for p in pairs if p.image.is_file()]
    missing = [str(p.image) for p in pairs if not p.image.is_file()]
    summary.missing_images += len(missing)
    summary.missing_examples += missing[: max(0, 5 - len(summary.missing_examples))]
    summary.pairs += len(kept)
    return kept


def roco_retrieval_subset(pairs: list[Pair], size: int = 2000, min_words: int = 3, seed: int = 42) -> list[Pair]:
    """The usual ROCO test protocol: captions of at least 3 words, shuffled with seed 42, first 2,000."""
    eligible = [p for p in pairs if len(p.caption.split()) >= min_words]
    random.Random(seed).shuffle(eligible)
    return eligible[:size]


def tokenize_captions(
    tokenizer: Callable[[list[str]], torch.Tensor], captions: list[str], summary: DataSummary | None = None
) -> torch.Tensor:
    """(N, context_length) token ids; captions longer than the context are cut by tokens and counted."""
    tokens = tokenizer(captions)  # [N, context_length]
    if summary is not None:
        summary.truncated_captions += sum(n > tokens.shape[1] for n in token_lengths(tokenizer, captions))
    return tokens


def load_image(path: Path, draft_size: int | None = None) -> Image.Image:
    """Decode an RGB image; ``draft_size`` lets JPEG decoding skip detail finer than that size (faster)."""
    image = Image.open(path)
    if draft_size is not None:
        image.draft("RGB", (draft_size, draft_size))
    return image.convert("RGB")


class ImageDataset(Dataset):
    """Images (and optionally their caption tokens) by index; undecodable images yield None."""

    def __init__(
        self,
        paths: Sequence[Path],
        transform: Callable,
        tokens: torch.Tensor | None = None,
        draft_size: int | None = None,
    ):
        self.paths, self.transform, self.tokens, self.draft_size = list(paths), transform, tokens, draft_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor, torch.Tensor | None] | None:
        try:
            image = self.transform(load_image(self.paths[index], self.draft_size))  # [3, S, S]
        except (OSError, ValueError, SyntaxError):  # PIL's errors for truncated or foreign files
            return None
        return index, image, None if self.tokens is None else self.tokens[index]


@dataclass
class Batch:
    """A collated batch: dataset indices, images, caption tokens, and how many items failed to decode."""

    index: torch.Tensor  # [B]
    images: torch.Tensor  # [B, 3, S, S]
    tokens: torch.Tensor | None  # [B, context_length]
    skipped: int


def collate(items: list[tuple | None]) -> Batch:
    good = [item for item in items if item is not None]
    skipped = len(items) - len(good)
    if not good:
        return Batch(torch.zeros(0, dtype=torch.long), torch.zeros(0), None, skipped)
    index = torch.tensor([item[0] for item in good])
    images = torch.stack([item[1] for item in good])
    tokens = None if good[0][2] is None else torch.stack([item[2] for item in good])
    return Batch(index, images, tokens, skipped)


class ShardedBatchSampler(Sampler[list[int]]):
    """Global batches of a seeded per-epoch permutation; each process takes its contiguous slice.

    The union of the slices of step k over all processes is batch k of a single process with the same
    global batch size, so a distributed run sees exactly the data of a one-process run.
    """

    def __init__(
        self, n: int, global_batch: int, rank: int, world: int, seed: int, shuffle: bool = True, drop_last: bool = True
    ):
        if global_batch % world:
            raise UserError(f"batch size {global_batch} is not divisible by the {world} processes")
        self.n, self.batch, self.rank, self.world = n, global_batch, rank, world
        self.seed, self.shuffle, self.drop_last, self.epoch = seed, shuffle, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n // self.batch if self.drop_last else -(-self.n // self.batch)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        else:
            order = torch.arange(self.n)
        for step in range(len(self)):
            chunk = order[step * self.batch : (step + 1) * self.batch]
            per_rank = -(-len(chunk) // self.world)
            yield chunk[self.rank * per_rank : (self.rank + 1) * per_rank].tolist()


def read_labelled(spec: str | Path, image_root: str | Path | None = None) -> list[LabelledImage]:
    """Labelled images from a SLAKE 1.0 folder (labels ``modality``, ``organ``) or a CSV/JSONL table.

    A table needs an image column; every other column except ``split`` is a label.
    """
    path = Path(spec)
    if path.is_dir() and (path / "train.json").is_file() and (path / slake.IMAGES).is_dir():
        return _read_slake(path)
    if not path.is_file():
        raise UserError(f"labelled image file or SLAKE folder not found: {path}")
    rows = _read_rows(path)
    if not rows:
        raise UserError(f"{path}: no rows")
    image_col = _pick(list(rows[0]), IMAGE_COLUMNS, path, "image")
    root = _image_dir(Path(image_root) if image_root else path.parent)
    return [
        LabelledImage(
            root / str(row[image_col]),
            {k: str(v) for k, v in row.items() if k not in (image_col, "split")},
            str(row.get("split", "")),
        )
        for row in rows
    ]


def _read_slake(root: Path) -> list[LabelledImage]:
    """One record per image and split of SLAKE 1.0 (``train``, ``validate``, ``test``), labelled by modality
    and organ, in file order.

    Only images with English questions are kept: their train/validate/test splits share no image, whereas
    the Chinese records reuse training images in the test split.
    """
    raw = slake.read(root, language="en")
    images = Path(raw.source) / slake.IMAGES
    split_names = {split: Path(file).stem for split, file in slake.SPLIT_FILES.items()}
    records: dict[tuple[str, str], LabelledImage] = {}
    for record in raw.records:
        key = (split_names[record.split], record.image_id)
        if key not in records:
            records[key] = LabelledImage(images / record.image_id, {"modality": record.modality,
                                                                    "organ": record.organ}, key[0])
    return list(records.values())


SHARD_PATTERN = "[0-9][0-9][0-9][0-9][0-9][0-9].tar"


def find_shards(spec: str | Path) -> list[Path]:
    """The WebDataset shards (``000000.tar`` ...) of a folder such as ``pubmedclip pmc-oa extract`` writes;
    empty when ``spec`` is not such a folder."""
    path = Path(spec)
    return sorted(path.glob(SHARD_PATTERN)) if path.is_dir() else []


def count_shard_pairs(shards: Sequence[Path]) -> int:
    """Pairs in the shards: from the ``pairs.jsonl`` index beside them, else by reading the tar headers."""
    index = shards[0].parent / "pairs.jsonl"
    names = {p.name for p in shards}
    if index.is_file():
        with index.open(encoding="utf-8") as handle:
            return sum(json.loads(line)["shard"] in names for line in handle if line.strip())
    total = 0
    for shard in shards:
        with tarfile.open(shard) as archive:
            total += sum(name.endswith(".jpg") for name in archive.getnames())
    return total


def iter_shard_samples(shard: Path) -> Iterator[tuple[str, bytes, str]]:
    """(key, image bytes, caption) of each sample of one tar shard, read as a stream."""
    key, files = None, {}
    try:
        with tarfile.open(shard, "r|") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                stem, _, extension = member.name.rpartition("/")[2].partition(".")
                if stem != key:
                    if "jpg" in files and "txt" in files:
                        yield key, files["jpg"], files["txt"].decode("utf-8")
                    key, files = stem, {}
                files[extension] = archive.extractfile(member).read()
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"{shard}: unreadable tar shard ({exc})") from exc
    if "jpg" in files and "txt" in files:
        yield key, files["jpg"], files["txt"].decode("utf-8")


def unpack_shards(folder: Path, cache_root: Path | None = None) -> list[Pair]:
    """The pairs of a shard folder as files, for the evaluations that read images by path.

    The images are unpacked once into ``cache_root`` (default: the system's temporary folder), under a name
    derived from the shards' paths, sizes and modification times, so changed shards are unpacked afresh;
    a cache is written to a temporary sibling and renamed into place when complete.
    """
    shards = find_shards(folder)
    identity = "\n".join(f"{s.resolve()} {s.stat().st_size} {s.stat().st_mtime_ns}" for s in shards)
    cache_root = cache_root or Path(tempfile.gettempdir()) / "pubmedclip-shards"
    cache = cache_root / hashlib.sha1(identity.encode()).hexdigest()[:16]
    captions = cache / "captions.jsonl"
    if not captions.is_file():
        cache_root.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=cache.name + ".", dir=cache_root))
        with (partial / "captions.jsonl").open("w", encoding="utf-8") as out:
            for shard in shards:
                for key, image_bytes, caption in iter_shard_samples(shard):
                    (partial / f"{key}.jpg").write_bytes(image_bytes)
                    out.write(json.dumps({"id": key, "caption": caption}) + "\n")
        try:
            partial.rename(cache)
        except OSError:  # another process finished the same cache first
            shutil.rmtree(partial, ignore_errors=True)
    with captions.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [Pair(cache / f"{row['id']}.jpg", row["caption"], row["id"]) for row in rows]


class ShardStream(IterableDataset):
    """Training batches streamed from WebDataset shards: memory does not grow with the number of shards.

    Each epoch the shards are permuted with the seed; process ``rank`` of ``world`` and data-loading worker
    ``w`` of ``W`` read every (world * W)-th shard from slot ``rank * W + w`` (wrapping around when its
    shards run out), shuffle within a buffer and yield ``Batch``es of ``batch_size`` (per process). Every
    process yields the same number of batches, ``pairs // (batch_size * world)``, as DDP requires.
    Use ``DataLoader(stream, batch_size=None)``.
    """

    def __init__(
        self,
        shards: Sequence[Path],
        pairs: int,
        transform: Callable,
        tokenizer: Callable[[list[str]], torch.Tensor],
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        draft_size: int | None = None,
    ):
        if not shards:
            raise UserError("no tar shards to stream")
        self.shards, self.transform, self.tokenizer = list(shards), transform, tokenizer
        self.batch_size, self.rank, self.world, self.seed = batch_size, rank, world, seed
        self.shuffle_buffer, self.draft_size, self.epoch = max(1, shuffle_buffer), draft_size, 0
        self.steps = pairs // (batch_size * world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def shard_cycle(self, slot: int, slots: int) -> Iterator[Path]:
        """The shards of ``slot`` (of ``slots``) this epoch, endlessly: every slots-th of the epoch's permutation."""
        order = list(self.shards)
        random.Random(self.seed * 1000 + self.epoch).shuffle(order)
        position = slot
        while True:
            yield order[position % len(order)]
            position += slots

    def _item(self, number: int, image_bytes: bytes, caption: str) -> tuple | None:
        try:
            with Image.open(io.BytesIO(image_bytes)) as image:
                if self.draft_size is not None:
                    image.draft("RGB", (self.draft_size, self.draft_size))
                tensor = self.transform(image.convert("RGB"))  # [3, S, S]
        except (OSError, ValueError, SyntaxError):
            return None
        return number, tensor, self.tokenizer([caption])[0]

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        slot, slots = self.rank * workers + worker, self.world * workers
        rng = random.Random(f"{self.seed}-{self.epoch}-{slot}")
        samples = (sample for shard in self.shard_cycle(slot, slots) for sample in iter_shard_samples(shard))
        buffer, number = [], 0
        for _ in range(worker, self.steps, workers):  # this worker's share of the epoch's batches
            items = []
            while len(items) < self.batch_size:
                while len(buffer) < self.shuffle_buffer:
                    buffer.append(next(samples))
                _, image_bytes, caption = buffer.pop(rng.randrange(len(buffer)))
                items.append(self._item(number, image_bytes, caption))
                number += 1
            yield collate(items)
