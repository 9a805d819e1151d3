"""Retrieval ranks and recall@K, classification accuracy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _ranks(
    queries: torch.Tensor, keys: torch.Tensor, query_groups: torch.Tensor, key_groups: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """1-based rank of the best-ranked correct key for each query (correct = same group)."""
    ranks = []
    for start in range(0, queries.shape[0], chunk):
        sim = queries[start : start + chunk] @ keys.T  # [C, K]
        correct = query_groups[start : start + chunk, None] == key_groups[None, :]  # [C, K]
        best = sim.masked_fill(~correct, float("-inf")).max(dim=1).values  # [C]
        ranks.append((sim > best[:, None]).sum(dim=1) + 1)
    return torch.cat(ranks)


def retrieval_metrics(
    image_emb: torch.Tensor, text_emb: torch.Tensor, captions: list[str] | None = None, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """Image->text and text->image R@K (%) and median rank for row-aligned pairs.

    Pairs whose captions are the same text are interchangeable: retrieving any of them counts as correct.
    ``mean_recall`` averages the R@K of both directions (the model-selection metric).
    """
    images = F.normalize(image_emb.float(), dim=-1)  # [N, D]
    texts = F.normalize(text_emb.float(), dim=-1)  # [N, D]
    if captions is None:
        groups = torch.arange(images.shape[0])
    else:
        ids: dict[str, int] = {}
        groups = torch.tensor([ids.setdefault(c, len(ids)) for c in captions])
    out: dict[str, float] = {"n": float(images.shape[0])}
    for name, (queries, keys) in {"i2t": (images, texts), "t2i": (texts, images)}.items():
        ranks = _ranks(queries, keys, groups, groups).float()
        for k in ks:
            out[f"{name}_R@{k}"] = 100.0 * float((ranks <= k).float().mean())
        out[f"{name}_median_rank"] = float(ranks.median())
    out["mean_recall"] = float(np.mean([out[f"{d}_R@{k}"] for d in ("i2t", "t2i") for k in ks]))
    return out


def classification_metrics(true: list[str], predicted: list[str]) -> dict[str, float]:
    """Accuracy and balanced accuracy (mean per-class recall), in %."""
    true_arr, pred_arr = np.asarray(true), np.asarray(predicted)
    recalls = [float((pred_arr[true_arr == c] == c).mean()) for c in np.unique(true_arr)]
    return {
        "n": float(len(true_arr)),
        "accuracy": 100.0 * float((true_arr == pred_arr).mean()),
        "balanced_accuracy": 100.0 * float(np.mean(recalls)),
    }
