"""Run under torchrun: gradients of one contrastive step on this process's rows of a fixed batch (rank 0 saves them)."""

from __future__ import annotations

import sys

import torch
from torch.nn.parallel import DistributedDataParallel

from pubmedclip.distributed import init_distributed
from pubmedclip.loss import clip_loss
from pubmedclip.models import random_clip

ROWS = (3, 5)  # uneven on purpose: rows are padded for the gather


def fixed_batch(loaded) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(sum(ROWS), 3, 32, 32, generator=generator)  # [8, 3, 32, 32]
    words = ["lung", "brain", "liver", "heart", "ct", "mri", "x-ray", "pelvis"]
    tokens = loaded.tokenizer([f"a {w} image number {i}" for i, w in enumerate(words)])  # [8, 77]
    return images, tokens


def gradients(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    image_features, text_features, scale = model(images, tokens)[:3]
    clip_loss(image_features, text_features, scale).backward()
    module = model.module if isinstance(model, DistributedDataParallel) else model
    return {name: p.grad.clone() for name, p in module.named_parameters()}


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist = init_distributed("cpu")
    torch.manual_seed(0)
    loaded = random_clip("tiny-vit")
    images, tokens = fixed_batch(loaded)
    start = sum(ROWS[: dist.rank])
    rows = slice(start, start + ROWS[dist.rank])
    grads = gradients(DistributedDataParallel(loaded.model), images[rows], tokens[rows])
    if dist.is_main:
        torch.save(grads, out)


if __name__ == "__main__":
    main(sys.argv[1])
