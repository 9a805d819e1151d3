"""A CLIP image tower as a visual branch (the PubMedCLIP plug-in: RGB -> ``encode_image`` embedding).

The branch wraps pubmedclip's frozen encoder (``pubmedclip.ImageEncoder``): the same tower, input spec and
identity, so a frozen branch and ``pubmedclip encode`` describe their features alike. Any checkpoint
``pubmedclip.load_clip`` reads works: OpenAI or PubMedCLIP ``.pt`` / ``.pth`` files, open_clip files and folders,
Hugging Face CLIP folders and this toolkit's own fine-tuning runs. Its output is the pooled, projected
embedding, not L2-normalised (as PubMedCLIP feeds it to MEVF and QCR); images come from the prepared
``rgb<size>`` cache, which is resized and centre-cropped as CLIP's own preprocessing, and are normalised with
the mean and std that travel with the checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from data_prep.input_spec import image_spec
from infra.errors import UserError
from medvqa.models.visual import VisualEncoder, register_encoder

if TYPE_CHECKING:  # open_clip is imported only when a CLIP branch is built: the VQA side starts fast without it
    from pubmedclip.encoder import ImageEncoder


class CLIPEncoder(VisualEncoder):
    """``encode(images [B, 3, S, S]) -> [B, embed_dim]`` with the tower of a ``pubmedclip.ImageEncoder``."""

    def __init__(self, clip: ImageEncoder) -> None:
        super().__init__()
        spec = clip.input_spec
        cache = image_spec(spec.key)
        for setting in ("resize_mode", "interpolation"):
            if getattr(spec, setting) != getattr(cache, setting):
                raise UserError(f"CLIP preprocessing {setting} {getattr(spec, setting)!r}: the {spec.key} image cache "
                                f"is made with {getattr(cache, setting)!r} (bicubic resize of the short side, "
                                "centre crop)")
        self.clip = clip
        self.input_spec, self.output_dim = spec, clip.output_dim

    def encode(self, images: Tensor) -> Tensor:
        return self.clip(images)  # [B, embed_dim], as CLIP.encode_image(images, normalize=False)

    def describe(self) -> dict[str, Any]:
        return self.clip.describe()  # the identity pubmedclip gives the same checkpoint


@dataclass
class CLIPSettings:
    weights: str = ""  # a PubMedCLIP .pth, an OpenAI .pt, an open_clip or Hugging Face folder (required)
    arch: str = ""  # the architecture, for a checkpoint that does not name it (ViT-B/32, RN50, ...)


@register_encoder("clip", settings=CLIPSettings)
def clip(settings: CLIPSettings) -> CLIPEncoder:
    """The image tower of the CLIP checkpoint ``settings.weights`` (a file or a folder)."""
    if not settings.weights:
        raise ValueError("visual encoder 'clip' needs a checkpoint: set model.encoders.clip.weights=PATH "
                         "(a PubMedCLIP .pth, an OpenAI .pt, an open_clip or Hugging Face folder)")
    from pubmedclip.checkpoints import load_clip
    from pubmedclip.encoder import ImageEncoder

    loaded = load_clip(settings.weights, settings.arch or None, arch_option="model.encoders.clip.arch")
    return CLIPEncoder(ImageEncoder(loaded=loaded))
