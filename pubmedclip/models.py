"""CLIP architectures through open_clip: names, configs, building, tokenizers and image transforms.

An architecture is an open_clip model config (a dict with ``embed_dim``, ``vision_cfg``, ``text_cfg`` and
optionally ``quick_gelu``). Names are open_clip's (``list_architectures()``) plus the tiny test
configs in ``model_configs/``. The three PubMedCLIP backbones keep their published names and mean OpenAI's
QuickGELU models: ``ViT-B/32``, ``RN50`` and ``RN50x4``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import open_clip
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP
from open_clip.transform import PreprocessCfg
from PIL import Image
from torch import nn
from torchvision import transforms as T

from data_prep.input_spec import InputSpec
from infra.errors import UserError

ALIASES = {"ViT-B/32": "ViT-B-32-quickgelu", "RN50": "RN50-quickgelu", "RN50x4": "RN50x4-quickgelu"}
open_clip.add_model_config(Path(__file__).parent / "model_configs")


def list_architectures() -> list[str]:
    """Every architecture name accepted by ``arch_config``."""
    return list(ALIASES) + open_clip.list_models()


def resolve_arch(name: str) -> str:
    """Map a user-facing name (alias, ``/`` or ``-`` spelling) to an open_clip config name."""
    resolved = ALIASES.get(name, name.replace("/", "-"))
    if open_clip.get_model_config(resolved) is None:
        known = ", ".join(list(ALIASES) + ["tiny-vit", "tiny-rn", "ViT-B-16", "..."])
        raise UserError(f"unknown architecture '{name}' (known: {known}; see pubmedclip.list_architectures())")
    return resolved


def arch_config(name: str) -> dict[str, Any]:
    """The open_clip model config of a named architecture (a fresh copy)."""
    return copy.deepcopy(open_clip.get_model_config(resolve_arch(name)))


def normalise_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fill every default so that two configs describing the same network compare equal."""
    out = {k: v for k, v in cfg.items() if k not in ("vision_cfg", "text_cfg", "custom_text")}
    out.setdefault("quick_gelu", False)
    out["vision_cfg"] = asdict(CLIPVisionCfg(**cfg["vision_cfg"]))
    out["text_cfg"] = asdict(CLIPTextCfg(**cfg["text_cfg"]))
    out["custom_text"] = bool(cfg.get("custom_text")) or out["text_cfg"]["hf_model_name"] is not None
    return json.loads(json.dumps(out))  # tuples -> lists


def name_of_config(cfg: dict[str, Any]) -> str:
    """The first registered architecture equal to ``cfg``, else ``custom``."""
    target = normalise_config(cfg)
    preferred = list(ALIASES.values()) + ["tiny-vit", "tiny-rn"]
    for name in preferred + open_clip.list_models():
        candidate = open_clip.get_model_config(name)
        if candidate is not None and normalise_config(candidate) == target:
            return name
    return "custom"


def build_model(cfg: dict[str, Any]) -> nn.Module:
    """A randomly initialised fp32 open_clip model for ``cfg`` (never downloads tower weights)."""
    cfg = copy.deepcopy(cfg)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg["text_cfg"]
    if custom_text:
        cfg["text_cfg"]["hf_model_pretrained"] = False
    cfg.get("vision_cfg", {}).pop("timm_model_pretrained", None)
    cls = CustomTextCLIP if custom_text else CLIP
    return cls(**cfg)


def preprocess_config(cfg: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Image preprocessing of a model: open_clip's defaults (OpenAI mean/std, bicubic, shortest-side resize) at
    the model's input size, under what the checkpoint stores (``overrides``, open_clip ``preprocess_cfg`` keys)."""
    pp = asdict(PreprocessCfg())
    pp["size"] = cfg["vision_cfg"].get("image_size", 224)
    pp.update({k: v for k, v in (overrides or {}).items() if k in pp})
    return json.loads(json.dumps(pp))


_INTERPOLATION = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
    "lanczos": T.InterpolationMode.LANCZOS,
}


def image_transform(
    pp: dict[str, Any], train: bool = False, crop_scale: tuple[float, float] = (0.9, 1.0), hflip: bool = False
) -> Callable[[Image.Image], torch.Tensor]:
    """PIL RGB image -> normalised (3, S, S) tensor: resized to S x S (``resize_mode`` squash) or the short side
    to S and centre-cropped (shortest). Training adds a random resized crop, and a flip only if asked."""
    size = pp["size"] if isinstance(pp["size"], int) else tuple(pp["size"])
    interpolation = _INTERPOLATION[pp["interpolation"]]
    if train:
        steps: list[Callable] = [T.RandomResizedCrop(size, scale=crop_scale, interpolation=interpolation)]
        if hflip:
            steps.append(T.RandomHorizontalFlip())
    elif pp.get("resize_mode") == "squash":
        steps = [T.Resize((size, size) if isinstance(size, int) else size, interpolation=interpolation)]
    else:
        steps = [T.Resize(size, interpolation=interpolation), T.CenterCrop(size)]
    return T.Compose(steps + [T.ToTensor(), T.Normalize(pp["mean"], pp["std"])])


def make_tokenizer(cfg: dict[str, Any]) -> Callable[[list[str]], torch.Tensor]:
    """The tokenizer a model's text tower was trained with; returns (N, context_length) int64 ids."""
    text = cfg["text_cfg"]
    context_length = text.get("context_length", 77)
    if text.get("hf_tokenizer_name"):
        return open_clip.tokenizer.HFTokenizer(text["hf_tokenizer_name"], context_length=context_length)
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)


def token_lengths(tokenizer: Callable, texts: list[str]) -> list[int]:
    """Number of tokens of each text before truncation, start/end tokens included."""
    if isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer):
        return [len(tokenizer.encode(t)) + 2 for t in texts]
    return [len(ids) for ids in tokenizer.tokenizer(texts)["input_ids"]]


@dataclass
class LoadedClip:
    """A CLIP model with everything needed to use it: architecture, preprocessing and tokenizer."""

    model: nn.Module
    arch: str  # registered name, or "custom"
    model_cfg: dict[str, Any]
    preprocess: dict[str, Any]
    source_format: str = "random"

    @cached_property
    def tokenizer(self) -> Callable[[list[str]], torch.Tensor]:
        return make_tokenizer(self.model_cfg)

    @property
    def embed_dim(self) -> int:
        return int(self.model_cfg["embed_dim"])

    @property
    def input_spec(self) -> InputSpec:
        """The image preprocessing as an input spec: square RGB of the model's input size (the ``rgb<size>``
        image cache), with the checkpoint's mean, std, interpolation and resize mode."""
        pp = self.preprocess
        sides = set(pp["size"]) if isinstance(pp["size"], (list, tuple)) else {pp["size"]}
        if len(sides) != 1:
            raise UserError(f"CLIP input size {pp['size']} is not square: input specs and rgb<N> image caches are")
        side = int(sides.pop())
        return InputSpec(f"rgb{side}", side, 3, tuple(pp["mean"]), tuple(pp["std"]), pp["interpolation"],
                         pp["resize_mode"])


def random_clip(arch: str) -> LoadedClip:
    """A randomly initialised model of a named architecture."""
    cfg = arch_config(arch)
    return LoadedClip(build_model(cfg).eval(), resolve_arch(arch), cfg, preprocess_config(cfg))
