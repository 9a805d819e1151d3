"""Helpers for the pubmedclip tests: an OpenAI CLIP oracle, embedding comparison, small image sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pubmedclip.checkpoints import infer_openai_config


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> bool:
    """Relative agreement of two embedding batches, measured against the largest entry."""
    return bool((a - b).abs().max() <= rtol * b.abs().max())


def oracle_model(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """OpenAI's CLIP class (clip-anytorch) built in fp32 from OpenAI-layout weights."""
    clip_model = pytest.importorskip("clip.model")
    cfg = infer_openai_config(state_dict)
    vis, txt = cfg["vision_cfg"], cfg["text_cfg"]
    model = clip_model.CLIP(
        cfg["embed_dim"],
        vis["image_size"],
        vis["layers"],
        vis["width"],
        vis["patch_size"],
        txt["context_length"],
        txt["vocab_size"],
        txt["width"],
        txt["heads"],
        txt["layers"],
    )
    model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    return model.eval()


def embeddings(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return model.encode_image(images).float(), model.encode_text(tokens).float()


def write_images(folder: Path, n: int, size: int = 48) -> list[Path]:
    """n small random RGB JPEGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
