"""An embedding index of captions or images: encoded once in resumable chunks, stored memory-mapped, searched
by inner product (the vectors are unit length, so the scores are cosine similarities).

A folder per index::

    manifest.json   format, kind (captions | images), model identity, checkpoint, count, dim, approximate index
    items.jsonl     one line per row: {"id", "caption"} or {"id", "path"}
    vectors.f32     float32 [count, dim], row-major; ``np.memmap`` reads it
    ivf.faiss       only with ``approximate=True``: a FAISS inverted-file index over the same vectors

The model identity is the feature cache's (``infra.feature_cache``): the sha256 of the model's weights, its
architecture and its image preprocessing. A search with another model is refused, because its queries would
live in another embedding space. While a build runs, ``progress.json`` records the rows written; running the
same build again continues from there.

Search: FAISS exact inner product when faiss is installed (``IndexFlatIP``), its inverted-file index when the
index was built approximate, and otherwise an exact search in torch that reads the vectors in chunks, so its
memory stays bounded however large the bank; both exact searches return the same neighbours.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Collection, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infra.errors import UserError
from infra.feature_cache import encoder_description, encoder_identity
from infra.files import write_text_atomic
from infra.progress import progress
from pubmedclip.encoder import ImageEncoder
from pubmedclip.models import LoadedClip
from pubmedclip.retrieval.bank import Caption

FORMAT = "pubmedclip-index/1"
MANIFEST, ITEMS, VECTORS, PROGRESS, IVF = "manifest.json", "items.jsonl", "vectors.f32", "progress.json", "ivf.faiss"
SCORE_BLOCK_BYTES = 256 << 20  # the torch search holds at most this much of query x bank scores at once

Encode = Callable[[list[dict[str, str]]], tuple[np.ndarray, np.ndarray]]  # items -> ([n, D] vectors, [n] decoded)


def model_identity(loaded: LoadedClip) -> str:
    """``clip-model-<digest>`` of the whole model's weights, architecture and image preprocessing."""
    description = encoder_description(loaded.input_spec, loaded.model.state_dict(), architecture=loaded.model_cfg)
    return encoder_identity("clip-model", description)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@torch.no_grad()
def encode_texts(loaded: LoadedClip, texts: Sequence[str], batch_size: int = 256, device: str = "cpu") -> np.ndarray:
    """[N, D] unit text embeddings (captions longer than the context are cut by the tokenizer)."""
    model = loaded.model.to(device).eval()
    rows = [model.encode_text(loaded.tokenizer(list(texts[i:i + batch_size])).to(device)).float().cpu().numpy()
            for i in range(0, len(texts), batch_size)]  # [b, D] each
    return unit_rows(np.concatenate(rows)) if rows else np.zeros((0, loaded.embed_dim), np.float32)


def _digest(items: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()


def _write_items(path: Path, items: list[dict[str, str]]) -> None:
    write_text_atomic(path, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))


def _build(out: str | Path, kind: str, loaded: LoadedClip, items: list[dict[str, str]], encode: Encode,
           source: str, checkpoint: str | None, chunk_size: int, approximate: bool, overwrite: bool) -> EmbeddingIndex:
    """Encode ``items`` chunk by chunk into ``out``, continuing an interrupted build of the same inputs."""
    out = Path(out)
    header = {"format": FORMAT, "kind": kind, "identity": model_identity(loaded), "items_digest": _digest(items),
              "checkpoint": checkpoint, "arch": loaded.arch, "source": source, "dim": loaded.embed_dim,
              "approximate": approximate}
    if (out / MANIFEST).is_file():
        existing = json.loads((out / MANIFEST).read_text())
        if {k: existing.get(k) for k in header} == header:
            return EmbeddingIndex(out)
        if not overwrite:
            raise UserError(f"{out} already holds an index of {existing.get('kind')} from {existing.get('source')} "
                            f"(model {existing.get('identity')}); use --overwrite or another --out")
    state = json.loads((out / PROGRESS).read_text()) if (out / PROGRESS).is_file() else None
    n, dim = len(items), loaded.embed_dim
    if state is None or state["header"] != header:
        if out.is_dir() and any(out.iterdir()) and not overwrite and state is None:
            raise UserError(f"{out} exists and is not an index; use another --out or --overwrite")
        if out.is_dir():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        _write_items(out / ITEMS, items)
        np.memmap(out / VECTORS, np.float32, "w+", shape=(max(n, 1), dim)).flush()
        np.memmap(out / "decoded.u8", np.uint8, "w+", shape=(max(n, 1),)).flush()
        state = {"header": header, "done": 0}
    vectors = np.memmap(out / VECTORS, np.float32, "r+", shape=(max(n, 1), dim))
    decoded = np.memmap(out / "decoded.u8", np.uint8, "r+", shape=(max(n, 1),))
    starts = range(state["done"], n, chunk_size)
    for start in progress(starts, desc=f"index {kind}", unit="chunk", total=len(starts)):
        emb, ok = encode(items[start:start + chunk_size])
        vectors[start:start + len(ok)] = unit_rows(emb)
        decoded[start:start + len(ok)] = ok
        vectors.flush()
        decoded.flush()
        write_text_atomic(out / PROGRESS, json.dumps({"header": header, "done": start + len(ok)}) + "\n")
    keep = np.flatnonzero(decoded[:n])
    skipped = [items[i]["id"] for i in np.flatnonzero(decoded[:n] == 0)]
    del vectors, decoded
    if skipped:  # rows of undecodable images leave the index
        _compact(out, keep, n, dim)
        _write_items(out / ITEMS, [items[i] for i in keep])
    if len(keep) == 0:
        raise UserError(f"no {kind} in {source} could be encoded")
    if approximate:
        _build_ivf(out, len(keep), dim)
    manifest = {**header, "count": int(len(keep)), "skipped": skipped}
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    (out / PROGRESS).unlink()
    (out / "decoded.u8").unlink()
    return EmbeddingIndex(out)


def _compact(out: Path, keep: np.ndarray, n: int, dim: int) -> None:
    source = np.memmap(out / VECTORS, np.float32, "r", shape=(n, dim))
    tmp = out / f".{VECTORS}.tmp"
    target = np.memmap(tmp, np.float32, "w+", shape=(len(keep), dim))
    for start in range(0, len(keep), 65536):
        target[start:start + 65536] = source[keep[start:start + 65536]]
    target.flush()
    del source, target
    os.replace(tmp, out / VECTORS)


def _build_ivf(out: Path, count: int, dim: int) -> None:
    """A FAISS inverted-file index (about 4 sqrt(N) lists, trained on up to 256 vectors per list)."""
    faiss = _faiss()
    if faiss is None:
        raise UserError("an approximate index needs faiss (pip install faiss-cpu)")
    vectors = np.memmap(out / VECTORS, np.float32, "r", shape=(count, dim))
    nlist = max(1, min(int(4 * count ** 0.5), count // 39 or 1))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(count, size=min(count, 256 * nlist), replace=False)
    index.train(np.ascontiguousarray(vectors[np.sort(sample)]))
    for start in range(0, count, 65536):
        index.add(np.ascontiguousarray(vectors[start:start + 65536]))
    faiss.write_index(index, str(out / IVF))


def build_caption_index(loaded: LoadedClip, captions: Sequence[Caption], out: str | Path, *, source: str = "",
                        checkpoint: str | None = None, batch_size: int = 256, device: str = "cpu",
                        chunk_size: int = 8192, approximate: bool = False, overwrite: bool = False) -> EmbeddingIndex:
    """Index the text embeddings of ``captions`` in ``out`` (resumes an interrupted build of the same captions)."""
    items = [{"id": c.id, "caption": c.text} for c in captions]

    def encode(chunk: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        return encode_texts(loaded, [item["caption"] for item in chunk], batch_size, device), np.ones(len(chunk), bool)

    return _build(out, "captions", loaded, items, encode, source, checkpoint, chunk_size, approximate, overwrite)


def build_image_index(encoder: ImageEncoder, paths: Sequence[Path], out: str | Path, *, root: str | Path | None = None,
                      checkpoint: str | None = None, chunk_size: int = 4096, approximate: bool = False,
                      overwrite: bool = False) -> EmbeddingIndex:
    """Index the image embeddings of ``paths`` (ids relative to ``root``); undecodable images are skipped and listed."""
    items = [{"id": Path(p).relative_to(root).as_posix() if root else str(p), "path": str(Path(p).resolve())}
             for p in paths]

    def encode(chunk: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
        return encoder.encode_files([item["path"] for item in chunk])

    return _build(out, "images", encoder.loaded, items, encode, str(root or ""), checkpoint, chunk_size, approximate,
                  overwrite)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def search_exact_torch(file: str | Path, count: int, dim: int, queries: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Exact top-``k`` inner products of ``queries`` [Q, D] against the [count, D] float32 rows of ``file``.

    The rows are read in blocks (not mapped), so memory stays near ``SCORE_BLOCK_BYTES`` for any bank size.
    Returns (scores [Q, k], rows [Q, k]), best first.
    """
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))  # [Q, D]
    k = min(k, count)
    block_rows = int(max(1024, SCORE_BLOCK_BYTES // (4 * (len(q) + dim))))
    best_scores = torch.full((len(q), k), float("-inf"))  # [Q, k]
    best_rows = torch.full((len(q), k), -1, dtype=torch.long)  # [Q, k]
    with open(file, "rb") as handle:
        for start in range(0, count, block_rows):
            n = min(block_rows, count - start)
            block = torch.from_numpy(np.fromfile(handle, np.float32, n * dim).reshape(n, dim))  # [n, D]
            scores, rows = (q @ block.T).topk(min(k, n), dim=1)  # [Q, min(k, n)]
            merged_scores = torch.cat([best_scores, scores], dim=1)
            merged_rows = torch.cat([best_rows, rows + start], dim=1)
            best_scores, order = merged_scores.topk(k, dim=1)
            best_rows = merged_rows.gather(1, order)
    return best_scores.numpy(), best_rows.numpy()


class EmbeddingIndex:
    """A built index folder: its manifest, items, memory-mapped vectors and search."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not (self.folder / MANIFEST).is_file():
            if (self.folder / PROGRESS).is_file():
                raise UserError(f"the index build in {self.folder} did not finish; run the same pubmedclip index "
                                "command again to continue it")
            raise UserError(f"{self.folder} is not an index (no {MANIFEST}); build one with pubmedclip index")
        self.manifest: dict[str, Any] = json.loads((self.folder / MANIFEST).read_text())
        if self.manifest.get("format") != FORMAT:
            raise UserError(f"{self.folder / MANIFEST}: format {self.manifest.get('format')!r}, expected {FORMAT}")
        self.kind: str = self.manifest["kind"]
        self.count, self.dim = int(self.manifest["count"]), int(self.manifest["dim"])
        self._faiss_index: Any = None

    @property
    def vectors(self) -> np.memmap:
        """[count, dim] float32 unit rows, memory-mapped read-only."""
        return np.memmap(self.folder / VECTORS, np.float32, "r", shape=(self.count, self.dim))

    @cached_property
    def items(self) -> list[dict[str, str]]:
        return [json.loads(line) for line in (self.folder / ITEMS).read_text(encoding="utf-8").splitlines()]

    def check_model(self, loaded: LoadedClip) -> None:
        """Refuse a model other than the one the index was built with."""
        identity = model_identity(loaded)
        if identity != self.manifest["identity"]:
            raise UserError(f"index {self.folder} was built with another model ({self.manifest['identity']} from "
                            f"{self.manifest.get('checkpoint')}), not {identity}: rebuild it with pubmedclip index")

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[Collection[int]] | None = None,
               backend: str = "auto", nprobe: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows for each of ``queries`` [Q, D] (unit rows): (scores [Q, k], rows [Q, k]), best first.

        ``exclude[q]``: rows query ``q`` must not get. ``backend``: auto (FAISS if installed), faiss or torch.
        Where fewer than ``k`` rows remain, rows are -1 and scores -inf.
        """
        queries = unit_rows(queries)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise UserError(f"queries of shape {queries.shape} do not match the index dimension {self.dim}")
        extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        wanted = min(k + extra, self.count)
        faiss = _faiss() if backend in ("auto", "faiss") else None
        if backend == "faiss" and faiss is None:
            raise UserError("backend faiss: faiss is not installed (pip install faiss-cpu)")
        if faiss is not None:
            scores, rows = self._faiss(faiss, nprobe).search(np.ascontiguousarray(queries), wanted)
        elif backend in ("auto", "torch"):
            scores, rows = search_exact_torch(self.folder / VECTORS, self.count, self.dim, queries, wanted)
        else:
            raise UserError(f"unknown search backend {backend!r} (auto, faiss, torch)")
        out_scores = np.full((len(queries), k), -np.inf, np.float32)
        out_rows = np.full((len(queries), k), -1, np.int64)
        for q in range(len(queries)):
            banned = exclude[q] if exclude is not None else ()
            kept = [(s, r) for s, r in zip(scores[q], rows[q]) if r >= 0 and r not in banned][:k]
            if kept:
                out_scores[q, :len(kept)], out_rows[q, :len(kept)] = zip(*kept)
        return out_scores, out_rows

    def _faiss(self, faiss: Any, nprobe: int) -> Any:
        if self._faiss_index is None:
            if self.manifest.get("approximate"):
                self._faiss_index = faiss.read_index(str(self.folder / IVF))
            else:
                self._faiss_index = faiss.IndexFlatIP(self.dim)
                vectors = self.vectors
                for start in range(0, self.count, 65536):
                    self._faiss_index.add(np.ascontiguousarray(vectors[start:start + 65536]))
        if self.manifest.get("approximate"):
            self._faiss_index.nprobe = nprobe
        return self._faiss_index
