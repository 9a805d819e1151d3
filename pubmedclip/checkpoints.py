"""Read CLIP weights from every common format, and write PubMedCLIP-compatible ``.pth`` files.

Formats read by ``load_clip``:

- OpenAI TorchScript archives (``ViT-B-32.pt``) and OpenAI state-dict files;
- PubMedCLIP ``.pth`` (``{'state_dict': ..., 'optimizer_state_dict': ...}``, ``module.`` prefixes allowed);
- open_clip training checkpoints (``epoch_K.pt``; the architecture is read from ``../params.txt``);
- open_clip model directories (``open_clip_config.json`` + weights);
- Hugging Face ``CLIPModel`` directories (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``,
  with the image preprocessing of ``preprocessor_config.json``);
- this package's own run checkpoints (they store their architecture).

The image preprocessing (input size, mean, std, interpolation, resize mode) travels with the weights wherever
the format stores it (open_clip folders, Hugging Face folders, run checkpoints, ``export_pubmedclip`` files);
elsewhere it is OpenAI's. Weights are copied into an fp32 model at the values stored in the file; nothing is
rounded to fp16 first. A file that holds no CLIP (a MEVF ``pretrained_ae.pth``, a plain pickle) is a one-line
error saying what it holds.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from infra.errors import UserError
from infra.files import torch_save_atomic
from pubmedclip.models import (
    LoadedClip,
    arch_config,
    build_model,
    name_of_config,
    normalise_config,
    preprocess_config,
    random_clip,
    resolve_arch,
)

RUN_FORMAT = "pubmedclip-run/1"
_OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")
_TOWER_PREFIXES = ("visual.", "transformer.", "token_embedding.", "text.")  # OpenAI / open_clip key names
_PICKLE_PROTOCOL_2_PLUS = b"\x80"
_LEGACY_TORCH_FILE = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # torch.save's magic
_PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _sample(keys: Any, shown: int = 3) -> str:
    keys = list(keys)
    return ", ".join(map(str, keys[:shown])) + (", …" if len(keys) > shown else "")


def _is_plain_pickle(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(len(_LEGACY_TORCH_FILE))
    return head.startswith(_PICKLE_PROTOCOL_2_PLUS) and head != _LEGACY_TORCH_FILE


def _read_tensors(path: Path) -> Any:
    """torch.load / safetensors / TorchScript, with unreadable files reported in one line."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if zipfile.is_zipfile(path) and any("/code/" in n for n in zipfile.ZipFile(path).namelist()):
            return torch.jit.load(str(path), map_location="cpu").state_dict()
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        if _is_plain_pickle(path):
            raise UserError(f"{path} is not a CLIP checkpoint: it is a plain Python pickle, not a torch, TorchScript "
                            "or safetensors file") from None
        raise UserError(f"cannot read checkpoint {path}: {_first_line(exc)} (truncated or not a checkpoint?)") from exc


def clean_state_dict(state_dict: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Strip DDP ``module.`` prefixes and the non-weight entries of OpenAI archives."""
    out = {}
    for key, value in state_dict.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if key not in _OPENAI_EXTRA_KEYS and isinstance(value, torch.Tensor):
            out[key] = value
    return out


def _require_clip(path: Path, sd: dict[str, torch.Tensor], entries: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``sd`` when it holds CLIP tower weights; otherwise a one-line error saying what the file holds."""
    if any(key.startswith(_TOWER_PREFIXES) for key in sd):
        return sd
    if any(key.startswith(("vision_model.", "text_model.")) for key in sd):
        raise UserError(f"{path} holds the weights of a Hugging Face CLIPModel: give its folder (with config.json)")
    if sd:
        held = f"its {len(sd)} tensors ({_sample(sd)}) have no visual or text tower keys"
    else:
        held = f"it holds no tensors (its entries: {_sample(entries) or 'none'})"
    raise UserError(f"{path} is not a CLIP checkpoint: {held}")


def infer_openai_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The open_clip config of an OpenAI-layout CLIP state dict (QuickGELU, 64-wide heads)."""
    if "token_embedding.weight" not in sd or not any(k.startswith("visual.") for k in sd):
        raise UserError(f"cannot infer the architecture from keys like {_sample(sd)}")
    text_width = sd["ln_final.weight"].shape[0]
    text_layers = {k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")}
    text_cfg = {
        "context_length": sd["positional_embedding"].shape[0],
        "vocab_size": sd["token_embedding.weight"].shape[0],
        "width": text_width,
        "heads": text_width // 64,
        "layers": len(text_layers),
    }
    if "visual.proj" in sd:  # vision transformer
        width, _, patch, _ = sd["visual.conv1.weight"].shape  # [width, 3, patch, patch]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        layers = {k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")}
        vision_cfg = {"image_size": patch * grid, "layers": len(layers), "width": width, "patch_size": patch}
    else:  # modified ResNet with attention pooling
        blocks = [len({k.split(".")[2] for k in sd if k.startswith(f"visual.layer{i}.")}) for i in (1, 2, 3, 4)]
        grid = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        vision_cfg = {
            "image_size": grid * 32,
            "layers": blocks,
            "width": sd["visual.layer1.0.conv1.weight"].shape[0],
            "patch_size": None,
        }
    return {
        "embed_dim": sd["text_projection"].shape[1],
        "quick_gelu": True,
        "vision_cfg": vision_cfg,
        "text_cfg": text_cfg,
    }


# OpenAI-layout names -> Hugging Face CLIPModel names. Per transformer block (besides q, k, v, which Hugging Face
# keeps apart and OpenAI concatenates as attn.in_proj_*):
HF_BLOCK_NAMES = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                  "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
HF_TOWERS = {"": "text_model.", "visual.": "vision_model."}  # OpenAI prefix -> Hugging Face prefix
# Outside the blocks; the projections are stored transposed ([width, embed_dim] against [embed_dim, width]).
HF_NAMES = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "logit_scale": "logit_scale",
    **{f"{ours}.{kind}": f"{theirs}.{kind}" for kind in ("weight", "bias") for ours, theirs in (
        ("ln_final", "text_model.final_layer_norm"), ("visual.ln_pre", "vision_model.pre_layrnorm"),
        ("visual.ln_post", "vision_model.post_layernorm"))},
}
HF_TRANSPOSED = {"text_projection": "text_projection.weight", "visual.proj": "visual_projection.weight"}


def hf_block_names(prefix: str, hf_prefix: str, layers: int) -> dict[str, str]:
    """The OpenAI -> Hugging Face names of one tower's blocks, q/k/v aside."""
    return {f"{prefix}transformer.resblocks.{i}.{ours}.{kind}": f"{hf_prefix}encoder.layers.{i}.{theirs}.{kind}"
            for i in range(layers) for ours, theirs in HF_BLOCK_NAMES.items() for kind in ("weight", "bias")}


def hf_to_openai(
    sd: dict[str, torch.Tensor], hf_config: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert a Hugging Face ``CLIPModel`` state dict and config.json to the OpenAI layout and open_clip config."""
    out = {ours: sd[theirs] for ours, theirs in HF_NAMES.items()}
    out.update({ours: sd[theirs].T for ours, theirs in HF_TRANSPOSED.items()})  # [width, embed_dim]
    for prefix, hf_prefix in HF_TOWERS.items():
        layers = hf_config[f"{hf_prefix[:-7]}_config"]["num_hidden_layers"]
        out.update({ours: sd[theirs] for ours, theirs in hf_block_names(prefix, hf_prefix, layers).items()})
        for i in range(layers):
            src, dst = f"{hf_prefix}encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
            for kind in ("weight", "bias"):
                qkv = [sd[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"]
                out[f"{dst}attn.in_proj_{kind}"] = torch.cat(qkv, dim=0)  # [3 * width, ...]

    vis, txt = hf_config["vision_config"], hf_config["text_config"]
    cfg = {
        "embed_dim": hf_config.get("projection_dim", out["visual.proj"].shape[1]),
        "quick_gelu": vis.get("hidden_act", "quick_gelu") == "quick_gelu",
        "vision_cfg": {
            "image_size": vis["image_size"],
            "patch_size": vis["patch_size"],
            "width": vis["hidden_size"],
            "layers": vis["num_hidden_layers"],
            "head_width": vis["hidden_size"] // vis["num_attention_heads"],
            "mlp_ratio": vis["intermediate_size"] / vis["hidden_size"],
        },
        "text_cfg": {
            "context_length": txt["max_position_embeddings"],
            "vocab_size": txt["vocab_size"],
            "width": txt["hidden_size"],
            "heads": txt["num_attention_heads"],
            "layers": txt["num_hidden_layers"],
            "mlp_ratio": txt["intermediate_size"] / txt["hidden_size"],
        },
    }
    return out, cfg


def hf_preprocess(folder: Path) -> dict[str, Any]:
    """The image preprocessing of a Hugging Face CLIP folder's ``preprocessor_config.json`` as open_clip
    ``preprocess_cfg`` keys ({} without that file)."""
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return {}
    cfg = json.loads(file.read_text())
    pp: dict[str, Any] = {}
    if cfg.get("do_normalize", True):
        names = {"mean": "image_mean", "std": "image_std"}
        pp.update({ours: cfg[theirs] for ours, theirs in names.items() if theirs in cfg})
    else:
        pp.update(mean=[0.0] * 3, std=[1.0] * 3)
    if "resample" in cfg:
        if cfg["resample"] not in _PIL_RESAMPLE:
            raise UserError(f"{file}: resample {cfg['resample']!r} is not a PIL filter (0 nearest, 1 lanczos, "
                            "2 bilinear, 3 bicubic)")
        pp["interpolation"] = _PIL_RESAMPLE[cfg["resample"]]
    size = cfg.get("size") if cfg.get("do_resize", True) else None
    crop = cfg.get("crop_size") if cfg.get("do_center_crop", True) else None
    short_side = size if isinstance(size, int) else (size or {}).get("shortest_edge")
    exact = (size["height"], size["width"]) if isinstance(size, dict) and "height" in size else None
    crop_hw = (crop, crop) if isinstance(crop, int) else (crop["height"], crop["width"]) if crop else None
    if short_side is not None and crop_hw == (short_side, short_side):
        pp.update(size=short_side, resize_mode="shortest")
    elif exact is not None and crop_hw in (None, exact):
        pp.update(size=exact[0] if exact[0] == exact[1] else list(exact), resize_mode="squash")
    elif size is not None or crop is not None:
        raise UserError(f"{file}: resize {size} then crop {crop} is not supported (CLIP resizes the short side to "
                        "the crop size, or resizes to height x width)")
    return pp


def _weights_in_dir(path: Path) -> Path:
    for name in _WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise UserError(f"no weights file in {path} (looked for {', '.join(_WEIGHT_FILES)})")


def _arch_from_params(path: Path) -> str | None:
    """The ``model:`` line of open_clip's ``params.txt`` beside ``checkpoints/epoch_K.pt``."""
    params = path.parent.parent / "params.txt"
    if params.is_file():
        for line in params.read_text().splitlines():
            if line.startswith("model:"):
                return line.split(":", 1)[1].strip()
    return None


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str, dict[str, Any]]:
    """(state dict, model config or None when it must be inferred, format name, preprocessing overrides)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if path.is_dir():
        if (path / "open_clip_config.json").is_file():
            config = json.loads((path / "open_clip_config.json").read_text())
            sd = clean_state_dict(_read_tensors(_weights_in_dir(path)))
            return sd, config.get("model_cfg", config), "open_clip-dir", config.get("preprocess_cfg", {})
        if (path / "config.json").is_file():
            config = json.loads((path / "config.json").read_text())
            if config.get("model_type") != "clip":
                raise UserError(f"{path}/config.json is a '{config.get('model_type')}' model, not a CLIPModel")
            sd, cfg = hf_to_openai(clean_state_dict(_read_tensors(_weights_in_dir(path))), config)
            return sd, cfg, "huggingface", hf_preprocess(path)
        raise UserError(f"{path} is a directory without open_clip_config.json or a Hugging Face config.json")
    obj = _read_tensors(path)
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    if obj.get("format") == RUN_FORMAT:
        return clean_state_dict(obj["state_dict"]), obj["model_cfg"], "pubmedclip-run", obj.get("preprocess", {})
    if isinstance(obj.get("state_dict"), dict):
        sd = _require_clip(path, clean_state_dict(obj["state_dict"]), obj["state_dict"])
        if "optimizer" in obj and "epoch" in obj:  # open_clip_train checkpoint
            arch = _arch_from_params(path)
            return sd, arch_config(arch) if arch else None, "open_clip-train", {}
        return sd, None, "pubmedclip", obj.get("preprocess", {})
    return _require_clip(path, clean_state_dict(obj), obj), None, "openai", {}


def _differences(model: nn.Module, sd: dict[str, torch.Tensor], limit: int = 3) -> list[str]:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    diffs = [
        f"{k} (missing)" if k not in sd else f"{k} (shape {tuple(sd[k].shape)} vs {shape})"
        for k, shape in expected.items()
        if k not in sd or tuple(sd[k].shape) != shape
    ]
    diffs += [f"{k} (unexpected)" for k in sd if k not in expected]
    return diffs[:limit]


def load_clip(path: str | Path | None = None, arch: str | None = None, arch_option: str = "--arch") -> LoadedClip:
    """Load a CLIP model from ``path`` (any supported format), or build ``arch`` at random when ``path`` is None.

    ``arch`` may be omitted whenever the file describes or implies its architecture. When both are known
    and disagree, the error names both architectures and the first differing keys. ``arch_option``: how the
    caller's user gives an architecture, named in errors.
    """
    if path is None:
        if arch is None:
            raise UserError("give a checkpoint path or an architecture")
        return random_clip(arch)
    sd, stored_cfg, fmt, pp_overrides = read_checkpoint(path)
    if stored_cfg is None and arch is None:
        if fmt == "open_clip-train":
            raise UserError(f"{path} is an open_clip training checkpoint without params.txt; give the architecture "
                            f"({arch_option})")
        try:
            stored_cfg = infer_openai_config(sd)
        except UserError as error:
            raise UserError(f"{path}: {error}; give the architecture ({arch_option})") from None
    found = name_of_config(stored_cfg) if stored_cfg is not None else None
    cfg = arch_config(arch) if arch is not None else stored_cfg
    model = build_model(cfg)
    if "logit_scale" in sd and sd["logit_scale"].ndim != model.logit_scale.ndim:
        sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
    diffs = _differences(model, sd)
    if diffs:
        if found is None:  # weights-only file read with a named architecture: say what the weights are
            try:
                found = name_of_config(infer_openai_config(sd))
            except UserError:
                found = "an unknown architecture"
        wanted = resolve_arch(arch) if arch is not None else found
        raise UserError(
            f"checkpoint {path} holds {found} weights, not {wanted}; first differing keys: {', '.join(diffs)}"
        )
    model.load_state_dict(sd)  # copies into fp32 parameters at the stored values
    name = resolve_arch(arch) if arch is not None else found
    return LoadedClip(model.eval(), name, cfg, preprocess_config(cfg, pp_overrides), fmt)


def openai_state_dict(loaded: LoadedClip, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The model's weights under OpenAI CLIP names; refused for networks OpenAI's CLIP class cannot express."""
    if loaded.model_cfg.get("custom_text") or "hf_model_name" in loaded.model_cfg["text_cfg"]:
        raise UserError(f"architecture {loaded.arch} has a custom text tower; it has no OpenAI CLIP layout")
    sd = {k: v.detach().to("cpu", dtype).clone() for k, v in loaded.model.state_dict().items()}
    implied = normalise_config(infer_openai_config(sd))
    actual = normalise_config(loaded.model_cfg)
    if implied != actual:
        fields = sorted(
            k for part in ("vision_cfg", "text_cfg") for k in actual[part] if actual[part][k] != implied[part][k]
        ) or ["quick_gelu"]
        raise UserError(
            f"architecture {loaded.arch} cannot be written as OpenAI CLIP weights (differs in {', '.join(fields)})"
        )
    return sd


def export_pubmedclip(
    loaded: LoadedClip, out: str | Path, dtype: torch.dtype = torch.float32, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``{'state_dict': OpenAI-layout weights, 'arch', 'model_cfg', 'preprocess', ...}`` as PubMedCLIP's
    code expects (it reads ``state_dict`` only)."""
    payload = {
        "state_dict": openai_state_dict(loaded, dtype),
        "arch": loaded.arch,
        "model_cfg": loaded.model_cfg,
        "preprocess": loaded.preprocess,
        **(extra or {}),
    }
    return torch_save_atomic(payload, out)

