"""Running a CLIP model over batches: autocast by precision name and embedding whole loaders."""

from __future__ import annotations

import contextlib

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from infra.errors import UserError


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast for ``bf16`` / ``fp16``; a no-op for ``fp32``."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


@torch.no_grad()
def embed_batches(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, precision: str = "fp32", texts: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, int]:
    """encode_image (and encode_text when ``texts``) over a loader: (image emb, text emb, indices, skipped)."""
    model.eval()
    images, captions, indices, skipped = [], [], [], 0
    for batch in tqdm(loader, desc="encode", leave=False, disable=None):  # shown on terminals only
        skipped += batch.skipped
        if batch.index.numel() == 0:
            continue
        with autocast(device, precision):
            images.append(model.encode_image(batch.images.to(device)).float().cpu())  # [b, D]
            if texts:
                captions.append(model.encode_text(batch.tokens.to(device)).float().cpu())  # [b, D]
        indices.append(batch.index)
    if not images:
        raise UserError("no image could be decoded")
    return torch.cat(images), torch.cat(captions) if texts else None, torch.cat(indices), skipped
