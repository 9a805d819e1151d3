"""The frozen CLIP image encoder: a checkpoint's image tower with its input spec, its identity and a feature cache.

``ImageEncoder`` is the visual-encoder interface for one CLIP checkpoint: ``encode(images) -> [B, D]``,
``output_dim``, ``input_spec`` (travels with the weights), ``trainable`` and ``identity()``; the VQA ``clip``
branch wraps this same module. ``encode_files`` embeds image files through ``infra.feature_cache``: a table per
identity (name, input spec, architecture and tower weights, sha256), each image keyed by the sha256 of its
bytes, so a renamed file is still a hit and an edited one is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.utils.data import DataLoader

from data_prep.input_spec import InputSpec
from infra.errors import UserError
from infra.feature_cache import FeatureCache, encoder_description, encoder_identity, file_digest
from pubmedclip.checkpoints import load_clip
from pubmedclip.data import IMAGE_SUFFIXES, ImageDataset, collate
from pubmedclip.embed import autocast, embed_batches
from pubmedclip.models import LoadedClip, image_transform

FILE_KEYS = "sha256 of the image file"  # what the item keys of ``encode_files`` tables are


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image directory not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class ImageEncoder(nn.Module):
    """The image tower of a CLIP checkpoint, frozen: ``encode`` runs without gradients on ``device``.

    Its only submodule is the tower (``visual``), so its state dict and identity cover the image side alone;
    ``loaded`` keeps the whole model (text tower, tokenizer) for retrieval and zero-shot evaluation.
    ``forward`` is the differentiable tower, which a VQA branch may fine-tune.
    """

    name = "clip"
    trainable = False

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        arch: str | None = None,
        *,
        loaded: LoadedClip | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 32,
        num_workers: int = 0,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.loaded = loaded or load_clip(checkpoint, arch)
        self.input_spec: InputSpec = self.loaded.input_spec
        self.output_dim = self.loaded.embed_dim
        self.device, self.precision = torch.device(device), precision
        self.batch_size, self.num_workers = batch_size, num_workers
        self.cache = FeatureCache(cache_dir) if cache_dir is not None else None
        self.visual = self.loaded.model.to(self.device).eval().visual
        self.transform = image_transform(self.loaded.preprocess)

    @property
    def model(self) -> nn.Module:
        """The whole CLIP model (the text tower too)."""
        return self.loaded.model

    def describe(self) -> dict[str, Any]:
        """What the embeddings depend on besides the images: input spec, architecture, tower weights (sha256)."""
        return encoder_description(self.input_spec, self.state_dict(), architecture=self.loaded.model_cfg)

    def identity(self) -> str:
        """``clip-<digest>`` of ``describe()``: the same tower and preprocessing, the same identity."""
        return encoder_identity(self.name, self.describe())

    def forward(self, images: Tensor) -> Tensor:
        """``[B, 3, S, S]`` normalised images -> ``[B, D]``, as ``encode_image(images, normalize=False)``."""
        return self.visual(images)  # [B, D]

    def preprocess(self, image: Image.Image) -> Tensor:
        """PIL image -> (3, S, S) model input."""
        return self.transform(image.convert("RGB"))

    @torch.no_grad()
    def encode(self, images: Tensor | Sequence[Image.Image]) -> Tensor:
        """(B, 3, S, S) preprocessed tensors or PIL images -> (B, D) float32 embeddings (not normalised)."""
        if not isinstance(images, Tensor):
            images = torch.stack([self.preprocess(image) for image in images])  # [B, 3, S, S]
        with autocast(self.device, self.precision):
            return self(images.to(self.device)).float().cpu()  # [B, D]

    def encode_files(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (N, D) float32 of image files and a mask of those that decoded (other rows are zero).

        With a ``cache_dir``, images already in the cache are not run through the model again.
        """
        keys = [file_digest(p) for p in paths]
        files = dict(zip(keys, map(Path, paths)))  # the same bytes under several names: any one of them

        def embed(missing: list[str]) -> dict[str, np.ndarray]:
            dataset = ImageDataset([files[key] for key in missing], self.transform)
            loader = DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate)
            try:
                emb, _, index, _ = embed_batches(self.model, loader, self.device, self.precision)  # [n, D]
            except UserError:  # none decoded
                return {}
            return {missing[i]: row for i, row in zip(index.tolist(), emb.numpy())}

        found = (self.cache.vectors(self.name, {**self.describe(), "items": FILE_KEYS}, keys, embed)
                 if self.cache is not None else embed(list(dict.fromkeys(keys))))
        out = np.zeros((len(paths), self.output_dim), dtype=np.float32)
        ok = np.array([key in found for key in keys], dtype=bool)
        for i, key in enumerate(keys):
            if ok[i]:
                out[i] = found[key]
        return out, ok
