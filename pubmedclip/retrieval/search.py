"""Captioning by retrieval, text->image and image->image search over an ``EmbeddingIndex``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infra.errors import UserError
from pubmedclip.encoder import ImageEncoder
from pubmedclip.models import LoadedClip
from pubmedclip.retrieval.index import EmbeddingIndex, encode_texts, unit_rows


@dataclass(frozen=True)
class Hit:
    """One retrieved item: its rank (1 = best), id, caption or image path, and cosine similarity."""

    rank: int
    id: str
    value: str
    score: float


def _hits(index: EmbeddingIndex, scores: np.ndarray, rows: np.ndarray) -> list[list[Hit]]:
    field = "caption" if index.kind == "captions" else "path"
    return [[Hit(rank + 1, index.items[r]["id"], index.items[r][field], float(s))
             for rank, (s, r) in enumerate(zip(query_scores, query_rows)) if r >= 0]
            for query_scores, query_rows in zip(scores, rows)]


def _require(index: EmbeddingIndex, kind: str, what: str) -> None:
    if index.kind != kind:
        raise UserError(f"{what} needs an index of {kind}; {index.folder} holds {index.kind}")


def encode_image_files(encoder: ImageEncoder, paths: Sequence[str | Path]) -> np.ndarray:
    """[N, D] unit image embeddings; a missing or undecodable image is a one-line error naming it."""
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"image not found: {path}")
    emb, ok = encoder.encode_files(paths)
    if not ok.all():
        raise UserError(f"cannot decode image {paths[int(np.flatnonzero(~ok)[0])]}")
    return unit_rows(emb)


def caption_images(index: EmbeddingIndex, encoder: ImageEncoder, paths: Sequence[str | Path], k: int = 5,
                   backend: str = "auto") -> list[list[Hit]]:
    """The ``k`` best captions of a caption index for each image."""
    _require(index, "captions", "captioning")
    index.check_model(encoder.loaded)
    return _hits(index, *index.search(encode_image_files(encoder, paths), k, backend=backend))


def search_text(index: EmbeddingIndex, loaded: LoadedClip, texts: Sequence[str], k: int = 10,
                backend: str = "auto") -> list[list[Hit]]:
    """The ``k`` images of an image index closest to each text query."""
    _require(index, "images", "text search")
    if not all(t.strip() for t in texts):
        raise UserError("empty text query")
    index.check_model(loaded)
    return _hits(index, *index.search(encode_texts(loaded, texts), k, backend=backend))


def search_images(index: EmbeddingIndex, encoder: ImageEncoder, paths: Sequence[str | Path], k: int = 10,
                  backend: str = "auto") -> list[list[Hit]]:
    """The ``k`` images of an image index closest to each query image (the query itself, if indexed, included)."""
    _require(index, "images", "image search")
    index.check_model(encoder.loaded)
    return _hits(index, *index.search(encode_image_files(encoder, paths), k, backend=backend))
