"""Captioning evaluation: caption each test image from a bank of captions, score the captions, and compare with
two baselines that learn nothing, under a named protocol.

Protocols:

- ``sound`` (default): each image gets its best-scoring bank caption; the image's own caption (the same id, or
  the same text) is never in its pool.
- ``medclip``: MedCLIP's published protocol: the 15 best captions by cosine similarity, ranks 1, 6 and 11 kept,
  each scored against the one true caption; the image's own caption stays in the pool, so this is an upper
  bound to compare with published figures, not a test.

Baselines, run under the same protocol and pool: ``random`` (a random bank caption) and ``pixel-nn`` (the
caption of the bank image whose 16x16 grey thumbnail correlates best with the test image's; it needs bank
images). Every figure carries a bootstrap 95 % interval over test images.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infra.errors import UserError
from infra.files import write_text_atomic
from pubmedclip.data import DataSummary, Pair, drop_missing, load_image, read_pairs
from pubmedclip.encoder import ImageEncoder
from pubmedclip.metrics import _ranks, retrieval_metrics
from pubmedclip.retrieval.bank import Caption, read_captions
from pubmedclip.retrieval.index import build_caption_index, encode_texts, unit_rows
from pubmedclip.retrieval.scoring import bootstrap_interval, caption_scores, with_intervals

PROTOCOLS = {
    "sound": "each test image is captioned by its best bank caption; its own caption (same id or same text) is "
             "excluded from its pool",
    "medclip": "MedCLIP's protocol: top-15 bank captions by cosine similarity, ranks 1, 6 and 11 kept and each scored "
               "against the single true caption; the image's own caption stays in the pool (not a test)",
}
KEPT_RANKS = {"sound": (1,), "medclip": (1, 6, 11)}
PIXEL_SIDE = 16


def _same(text: str) -> str:
    return " ".join(text.lower().split())


def excluded_rows(pairs: Sequence[Pair], bank: Sequence[Caption], protocol: str) -> list[set[int]]:
    """Bank rows each test image may not get: under ``sound``, its own caption by id and any caption of the same
    text; under ``medclip``, none."""
    if protocol == "medclip":
        return [set() for _ in pairs]
    by_id: dict[str, set[int]] = {}
    by_text: dict[str, set[int]] = {}
    for row, caption in enumerate(bank):
        by_id.setdefault(caption.id, set()).add(row)
        by_text.setdefault(_same(caption.text), set()).add(row)
    return [by_id.get(p.id, set()) | by_text.get(_same(p.caption), set()) for p in pairs]


def pixel_features(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """[N, 256] centred unit 16x16 grey thumbnails and a mask of the images that decoded."""
    features = np.zeros((len(paths), PIXEL_SIDE * PIXEL_SIDE), np.float32)
    ok = np.zeros(len(paths), bool)
    for i, path in enumerate(paths):
        try:
            image = load_image(Path(path), draft_size=4 * PIXEL_SIDE).convert("L").resize((PIXEL_SIDE, PIXEL_SIDE))
        except (OSError, ValueError, SyntaxError):
            continue
        pixels = np.asarray(image, np.float32).reshape(-1)
        features[i], ok[i] = pixels - pixels.mean(), True
    return unit_rows(features), ok


def _top(scores: np.ndarray, banned: Sequence[set[int]], depth: int) -> np.ndarray:
    """[Q, depth] best columns of ``scores`` [Q, N] per row, banned columns skipped."""
    scores = scores.copy()
    for q, rows in enumerate(banned):
        scores[q, list(rows)] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :depth]


def _score_system(picks: list[list[int]], bank: Sequence[Caption], refs: list[str], java: bool | None,
                  resamples: int, seed: int) -> tuple[dict[str, Any], str]:
    references, hypotheses, groups = [], [], []
    for q, rows in enumerate(picks):
        groups.append(list(range(len(hypotheses), len(hypotheses) + len(rows))))
        references += [refs[q]] * len(rows)
        hypotheses += [bank[r].text for r in rows]
    scores = caption_scores(references, hypotheses, java)
    intervals = bootstrap_interval(scores.resample, groups, resamples, seed)
    return with_intervals(scores.corpus, intervals), scores.scorer


def evaluate_captioning(encoder: ImageEncoder, data: str | Path, image_root: str | Path | None = None,
                        bank: str | Path | None = None, bank_image_root: str | Path | None = None,
                        protocol: str = "sound", k: int = 5, per_image: str | Path | None = None,
                        bank_index: str | Path | None = None, resamples: int = 1000, seed: int = 0,
                        java: bool | None = None, backend: str = "auto") -> dict[str, Any]:
    """Caption the images of ``data`` from ``bank`` (default: the captions of ``data`` itself) and score them.

    ``per_image``: JSONL with ``{"image_id", "reference", "retrieved": [{"id", "caption", "score", "rank"}]}``
    per image. ``bank_index``: keep the bank's caption index there (reused while model and bank are the same).
    ``java``: None = use pycocoevalcap when Java works.
    """
    if protocol not in PROTOCOLS:
        raise UserError(f"unknown captioning protocol {protocol!r} (choose from {', '.join(PROTOCOLS)})")
    summary = DataSummary()
    pairs = drop_missing(read_pairs(data, image_root), summary)
    if not pairs:
        raise UserError(f"no image-caption pairs with an existing image in {data}")
    image_emb, decoded = encoder.encode_files([p.image for p in pairs])
    pairs, image_emb = [p for p, ok in zip(pairs, decoded) if ok], unit_rows(image_emb[decoded])
    if not pairs:
        raise UserError(f"no image of {data} could be decoded")
    refs = [p.caption for p in pairs]

    captions = read_captions(bank) if bank is not None else [Caption(p.id, p.caption) for p in pairs]
    bank_pairs, pixel_note = _bank_images(bank, bank_image_root, pairs)
    banned = excluded_rows(pairs, captions, protocol)
    depth = max(KEPT_RANKS[protocol])
    if len(captions) - max(len(b) for b in banned) < depth:
        raise UserError(f"the bank holds {len(captions)} captions: too few for protocol {protocol}")
    with tempfile.TemporaryDirectory() as scratch:
        index = build_caption_index(encoder.loaded, captions, bank_index or Path(scratch) / "bank",
                                    source=str(bank or data), device=str(encoder.device))
        index.check_model(encoder.loaded)
        scores, rows = index.search(image_emb, max(k, depth), exclude=banned, backend=backend)

    kept = [r - 1 for r in KEPT_RANKS[protocol]]
    systems: dict[str, dict[str, Any]] = {}
    picks = {"clip": [list(rows[q, kept]) for q in range(len(pairs))]}
    rng = np.random.default_rng(seed)
    picks["random"] = [list(rng.choice(np.setdiff1d(np.arange(len(captions)), list(b)), len(kept), replace=False))
                       for b in banned]
    if bank_pairs:
        picks["pixel-nn"] = _pixel_picks(pairs, bank_pairs, captions, banned, protocol, depth, kept)
    scorer = ""
    for name, chosen in picks.items():
        systems[name], scorer = _score_system(chosen, captions, refs, java, resamples, seed)

    if per_image is not None:
        lines = [json.dumps({"image_id": p.id, "reference": p.caption, "retrieved": [
            {"id": captions[r].id, "caption": captions[r].text, "score": float(s), "rank": rank + 1}
            for rank, (s, r) in enumerate(zip(scores[q], rows[q])) if r >= 0 and (protocol == "sound" or rank in kept)
        ]}, ensure_ascii=False) for q, p in enumerate(pairs)]
        write_text_atomic(per_image, "\n".join(lines) + "\n")
    own = sum(captions[rows[q, 0]].id == p.id for q, p in enumerate(pairs))
    return {
        "task": "captioning",
        "protocol": protocol,
        "protocol_description": PROTOCOLS[protocol],
        "data": str(data),
        "n_images": len(pairs),
        "missing_images": summary.missing_images,
        "undecodable_images": int((~decoded).sum()),
        "bank": {"source": str(bank) if bank is not None else f"the other captions of {data}", "captions": len(captions),
                 "own_caption": "in the pool" if protocol == "medclip" else "excluded",
                 "own_caption_at_rank_1": int(own)},
        "kept_ranks": list(KEPT_RANKS[protocol]),
        "scorer": scorer,
        "bootstrap": {"resamples": resamples, "level": 0.95, "over": "test images", "seed": seed},
        "systems": systems,
        "baselines_left_out": {} if bank_pairs else {"pixel-nn": pixel_note},
        "retrieval": _retrieval(encoder, image_emb, refs, resamples, seed),
        "per_image": str(per_image) if per_image is not None else None,
    }


def _bank_images(bank: str | Path | None, bank_image_root: str | Path | None,
                 pairs: list[Pair]) -> tuple[list[Pair], str]:
    """The bank's image-caption pairs for the pixel baseline, or none and why."""
    if bank is None:
        return pairs, ""
    try:
        bank_pairs = drop_missing(read_pairs(bank, bank_image_root), DataSummary())
    except UserError as error:
        return [], f"the bank's images are not available ({error})"
    return (bank_pairs, "") if bank_pairs else ([], "none of the bank's images exist (give --bank-image-root)")


def _pixel_picks(pairs: list[Pair], bank_pairs: list[Pair], captions: Sequence[Caption], banned: list[set[int]],
                 protocol: str, depth: int, kept: list[int]) -> list[list[int]]:
    """Bank rows (of ``captions``) chosen by the nearest bank image in pixel space, under the same exclusions."""
    row_of = {c.id: r for r, c in enumerate(captions)}
    bank_pairs = [p for p in bank_pairs if p.id in row_of]
    query, _ = pixel_features([p.image for p in pairs])
    pool, ok = pixel_features([p.image for p in bank_pairs])
    pool_rows = np.array([row_of[p.id] if good else -1 for p, good in zip(bank_pairs, ok)])
    banned_pool = [set(np.flatnonzero(np.isin(pool_rows, list(b) + [-1])).tolist()) for b in banned]
    order = _top(query @ pool.T, banned_pool, depth)  # [Q, depth] pool positions
    return [list(pool_rows[order[q, kept]]) for q in range(len(pairs))]


def _retrieval(encoder: ImageEncoder, image_emb: np.ndarray, refs: list[str], resamples: int,
               seed: int) -> dict[str, Any]:
    """Image->text and text->image R@1/5/10 (%) among the test pairs, with bootstrap intervals over queries."""
    images = torch.from_numpy(image_emb)
    texts = torch.from_numpy(encode_texts(encoder.loaded, refs, device=str(encoder.device)))
    point = retrieval_metrics(images, texts, refs)
    ids: dict[str, int] = {}
    groups = torch.tensor([ids.setdefault(c, len(ids)) for c in refs])
    ranks = {"i2t": _ranks(images, texts, groups, groups).numpy(), "t2i": _ranks(texts, images, groups, groups).numpy()}

    def recalls(items: np.ndarray) -> dict[str, float]:
        return {f"{d}_R@{k}": 100.0 * float((ranks[d][items] <= k).mean()) for d in ranks for k in (1, 5, 10)}

    intervals = bootstrap_interval(recalls, [[i] for i in range(len(refs))], resamples, seed)
    return with_intervals({name: point[name] for name in recalls(np.arange(len(refs)))}, intervals)
