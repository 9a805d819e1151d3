"""A CLIP image tower as a visual branch (the PubMedCLIP plug-in: RGB -> ``encode_image`` embedding).

Any checkpoint ``pubmedclip.load_clip`` reads works: OpenAI or PubMedCLIP ``.pt`` / ``.pth`` files,
open_clip files and folders, Hugging Face CLIP folders and this toolkit's own fine-tuning runs. Only the
image tower is kept. Its output is the pooled, projected embedding, not L2-normalised (as PubMedCLIP
feeds it to MEVF and QCR); images come from the prepared ``rgb<size>`` cache, which is resized and
centre-cropped as CLIP's own preprocessing, and are normalised with the checkpoint's mean and std.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from medvqa.models.visual import InputSpec, VisualEncoder, register_encoder

if TYPE_CHECKING:  # open_clip is imported only when a CLIP branch is built: the VQA side starts fast without it
    from pubmedclip.models import LoadedClip


class CLIPEncoder(VisualEncoder):
    """``encode(images [B, 3, S, S]) -> [B, embed_dim]`` with the image tower of a loaded CLIP model."""

    def __init__(self, loaded: LoadedClip) -> None:
        super().__init__()
        preprocess = loaded.preprocess
        sizes = set(preprocess["size"]) if isinstance(preprocess["size"], (list, tuple)) else {preprocess["size"]}
        made_like_the_caches = {"resize_mode": "shortest", "interpolation": "bicubic"}
        for setting, expected in made_like_the_caches.items():
            if preprocess[setting] != expected:
                raise ValueError(f"CLIP preprocessing {setting} {preprocess[setting]!r}: the rgb image caches are made "
                                 f"with {expected!r} (bicubic resize of the short side, centre crop)")
        if len(sizes) != 1:
            raise ValueError(f"CLIP input size {preprocess['size']}: the rgb image caches are square")
        size = int(sizes.pop())
        self.input_spec = InputSpec(key=f"rgb{size}", size=size, channels=3, mean=tuple(preprocess["mean"]),
                                    std=tuple(preprocess["std"]))
        self.output_dim = loaded.embed_dim
        self.tower = loaded.model.visual

    def encode(self, images: Tensor) -> Tensor:
        return self.tower(images)  # [B, embed_dim], as CLIP.encode_image(images, normalize=False)


@register_encoder("clip")
def clip(weights: str | Path | None = None) -> CLIPEncoder:
    """The image tower of the CLIP checkpoint ``weights`` (a file or a folder; required)."""
    if not weights:
        raise ValueError("visual encoder 'clip' needs a checkpoint: set model.weights.clip=PATH "
                         "(a PubMedCLIP .pth, an OpenAI .pt, an open_clip or Hugging Face folder)")
    from pubmedclip.checkpoints import load_clip

    return CLIPEncoder(load_clip(weights))
