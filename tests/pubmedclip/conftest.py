"""Fixtures for the pubmedclip tests: tiny random models and inputs for them."""

from __future__ import annotations

import pytest
import torch

from pubmedclip.models import LoadedClip, random_clip

torch.set_num_threads(1)  # the test machine is shared: more threads contend and run slower


@pytest.fixture(params=["tiny-vit", "tiny-rn"])
def tiny(request: pytest.FixtureRequest) -> LoadedClip:
    torch.manual_seed(0)
    return random_clip(request.param)


@pytest.fixture
def batch(tiny: LoadedClip) -> tuple[torch.Tensor, torch.Tensor]:
    size = tiny.preprocess["size"]
    images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))  # [B, 3, S, S]
    tokens = tiny.tokenizer(["a ct scan of the chest", "axial mri of the brain", "x"])  # [B, 77]
    return images, tokens
