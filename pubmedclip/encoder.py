"""A frozen CLIP image encoder: images -> ``encode_image`` embeddings, with a feature cache on disk.

The cache lives in ``cache_dir/<identity>/`` where the identity hashes the checkpoint (file bytes, or the
weights of an in-memory model), the architecture and the preprocessing; images are keyed by the sha1 of
their bytes, so a renamed file is still a hit and an edited one is not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pubmedclip.checkpoints import checkpoint_hash, load_clip
from pubmedclip.data import IMAGE_SUFFIXES, ImageDataset, collate
from pubmedclip.embed import autocast, embed_batches
from infra.errors import UserError
from infra.files import save_npz_atomic, write_text_atomic
from pubmedclip.models import LoadedClip, image_transform


@dataclass(frozen=True)
class InputSpec:
    """What ``encode`` expects: RGB images of ``size`` x ``size`` normalised with ``mean``/``std``."""

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    resize_mode: str


def _weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image directory not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class ImageEncoder:
    """Frozen image tower of a CLIP checkpoint with the visual-encoder interface ``encode(images) -> (B, D)``."""

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
    ):
        self.loaded = loaded or load_clip(checkpoint, arch)
        self.device, self.precision = torch.device(device), precision
        self.batch_size, self.num_workers = batch_size, num_workers
        self.model = self.loaded.model.to(self.device).eval()
        self.transform = image_transform(self.loaded.preprocess)
        weights = (
            checkpoint_hash(checkpoint) if checkpoint is not None and loaded is None else _weights_hash(self.model)
        )
        key = json.dumps([weights, self.loaded.arch, self.loaded.model_cfg, self.loaded.preprocess], sort_keys=True)
        self.identity = hashlib.sha256(key.encode()).hexdigest()[:20]
        self.cache_dir = Path(cache_dir) / self.identity if cache_dir is not None else None

    @property
    def output_dim(self) -> int:
        return self.loaded.embed_dim

    @property
    def input_spec(self) -> InputSpec:
        pp = self.loaded.preprocess
        return InputSpec(
            int(pp["size"]), 3, tuple(pp["mean"]), tuple(pp["std"]), pp["interpolation"], pp["resize_mode"]
        )

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> (3, S, S) model input."""
        return self.transform(image.convert("RGB"))

    @torch.no_grad()
    def encode(self, images: torch.Tensor | Sequence[Image.Image]) -> torch.Tensor:
        """(B, 3, S, S) preprocessed tensors or PIL images -> (B, D) float32 embeddings (not normalised)."""
        if not isinstance(images, torch.Tensor):
            images = torch.stack([self.preprocess(image) for image in images])  # [B, 3, S, S]
        with autocast(self.device, self.precision):
            return self.model.encode_image(images.to(self.device)).float().cpu()  # [B, D]

    def _load_cache(self) -> dict[str, np.ndarray]:
        if self.cache_dir is None or not (self.cache_dir / "features.npz").is_file():
            return {}
        with np.load(self.cache_dir / "features.npz") as stored:
            return dict(zip(stored["keys"].tolist(), stored["embeddings"]))

    def _save_cache(self, cache: dict[str, np.ndarray]) -> None:
        meta = {"arch": self.loaded.arch, "model_cfg": self.loaded.model_cfg, "preprocess": self.loaded.preprocess}
        write_text_atomic(self.cache_dir / "meta.json", json.dumps(meta, indent=1))
        save_npz_atomic(self.cache_dir / "features.npz", keys=np.array(list(cache)),
                        embeddings=np.stack(list(cache.values())).astype(np.float32))

    def encode_files(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (N, D) float32 of image files and a mask of those that decoded (other rows are zero).

        Images already in the cache are not run through the model again.
        """
        keys = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths]
        cache = self._load_cache()
        todo = [i for i, key in enumerate(keys) if key not in cache]
        out = np.zeros((len(paths), self.output_dim), dtype=np.float32)
        ok = np.zeros(len(paths), dtype=bool)
        if todo:
            dataset = ImageDataset([Path(paths[i]) for i in todo], self.transform)
            loader = DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate)
            try:
                emb, _, index, _ = embed_batches(self.model, loader, self.device, self.precision)
            except UserError:  # none decoded
                emb, index = torch.zeros(0, self.output_dim), torch.zeros(0, dtype=torch.long)
            for row, position in zip(emb.numpy(), index.tolist()):
                cache[keys[todo[position]]] = row
            if self.cache_dir is not None and len(index):
                self._save_cache(cache)
        for i, key in enumerate(keys):
            if key in cache:
                out[i], ok[i] = cache[key], True
        return out, ok
