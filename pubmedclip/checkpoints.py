"""Read CLIP weights from every common format, and write PubMedCLIP-compatible ``.pth`` files.

Formats read by ``load_clip``:

- OpenAI TorchScript archives (``ViT-B-32.pt``) and OpenAI state-dict files;
- PubMedCLIP ``.pth`` (``{'state_dict': ..., 'optimizer_state_dict': ...}``, ``module.`` prefixes allowed);
- open_clip training checkpoints (``epoch_K.pt``; the architecture is read from ``../params.txt``);
- open_clip model directories (``open_clip_config.json`` + weights);
- Hugging Face ``CLIPModel`` directories (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``);
- this package's own run checkpoints (they store their architecture).

Weights are copied into an fp32 model at the values stored in the file; nothing is rounded to fp16 first.
"""

from __future__ import annotations

import hashlib
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
        raise UserError(f"cannot read checkpoint {path}: {_first_line(exc)} (truncated or not a checkpoint?)") from exc


def clean_state_dict(state_dict: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Strip DDP ``module.`` prefixes and the non-weight entries of OpenAI archives."""
    out = {}
    for key, value in state_dict.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if key not in _OPENAI_EXTRA_KEYS and isinstance(value, torch.Tensor):
            out[key] = value
    return out


def infer_openai_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The open_clip config of an OpenAI-layout CLIP state dict (QuickGELU, 64-wide heads)."""
    if "token_embedding.weight" not in sd or not any(k.startswith("visual.") for k in sd):
        sample = ", ".join(list(sd)[:3])
        raise UserError(f"cannot infer the architecture from keys like {sample}; pass the architecture (--arch)")
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


def hf_to_openai(
    sd: dict[str, torch.Tensor], hf_config: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Convert a Hugging Face ``CLIPModel`` state dict and config.json to the OpenAI layout and open_clip config."""
    out: dict[str, torch.Tensor] = {}
    towers = {"text_model.": "", "vision_model.": "visual."}
    renames = {
        "self_attn.out_proj": "attn.out_proj",
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
    }
    for hf_prefix, prefix in towers.items():
        n_layers = hf_config[f"{hf_prefix[:-7]}_config"]["num_hidden_layers"]
        for i in range(n_layers):
            src, dst = f"{hf_prefix}encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
            for kind in ("weight", "bias"):
                qkv = [sd[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"]
                out[f"{dst}attn.in_proj_{kind}"] = torch.cat(qkv, dim=0)  # [3 * width, ...]
                for old, new in renames.items():
                    out[f"{dst}{new}.{kind}"] = sd[f"{src}{old}.{kind}"]
    out["token_embedding.weight"] = sd["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = sd["text_model.embeddings.position_embedding.weight"]
    out["text_projection"] = sd["text_projection.weight"].T  # [width, embed_dim]
    out["visual.class_embedding"] = sd["vision_model.embeddings.class_embedding"]
    out["visual.conv1.weight"] = sd["vision_model.embeddings.patch_embedding.weight"]
    out["visual.positional_embedding"] = sd["vision_model.embeddings.position_embedding.weight"]
    out["visual.proj"] = sd["visual_projection.weight"].T  # [width, embed_dim]
    out["logit_scale"] = sd["logit_scale"]
    for kind in ("weight", "bias"):
        out[f"ln_final.{kind}"] = sd[f"text_model.final_layer_norm.{kind}"]
        out[f"visual.ln_pre.{kind}"] = sd[f"vision_model.pre_layrnorm.{kind}"]
        out[f"visual.ln_post.{kind}"] = sd[f"vision_model.post_layernorm.{kind}"]

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
            return sd, cfg, "huggingface", {}
        raise UserError(f"{path} is a directory without open_clip_config.json or a Hugging Face config.json")
    obj = _read_tensors(path)
    if not isinstance(obj, dict):
        raise UserError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    if obj.get("format") == RUN_FORMAT:
        return clean_state_dict(obj["state_dict"]), obj["model_cfg"], "pubmedclip-run", obj.get("preprocess", {})
    if isinstance(obj.get("state_dict"), dict):
        sd = clean_state_dict(obj["state_dict"])
        if "optimizer" in obj and "epoch" in obj:  # open_clip_train checkpoint
            arch = _arch_from_params(path)
            return sd, arch_config(arch) if arch else None, "open_clip-train", {}
        return sd, None, "pubmedclip", {}
    return clean_state_dict(obj), None, "openai", {}


def _differences(model: nn.Module, sd: dict[str, torch.Tensor], limit: int = 3) -> list[str]:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    diffs = [
        f"{k} (missing)" if k not in sd else f"{k} (shape {tuple(sd[k].shape)} vs {shape})"
        for k, shape in expected.items()
        if k not in sd or tuple(sd[k].shape) != shape
    ]
    diffs += [f"{k} (unexpected)" for k in sd if k not in expected]
    return diffs[:limit]


def load_clip(path: str | Path | None = None, arch: str | None = None) -> LoadedClip:
    """Load a CLIP model from ``path`` (any supported format), or build ``arch`` at random when ``path`` is None.

    ``arch`` may be omitted whenever the file describes or implies its architecture. When both are known
    and disagree, the error names both architectures and the first differing keys.
    """
    if path is None:
        if arch is None:
            raise UserError("give a checkpoint path or an architecture")
        return random_clip(arch)
    sd, stored_cfg, fmt, pp_overrides = read_checkpoint(path)
    if stored_cfg is None and arch is None:
        if fmt == "open_clip-train":
            raise UserError(f"{path} is an open_clip training checkpoint without params.txt; pass --arch")
        stored_cfg = infer_openai_config(sd)
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
    """Write ``{'state_dict': OpenAI-layout weights, 'arch', 'model_cfg', ...}`` as PubMedCLIP's code expects."""
    payload = {
        "state_dict": openai_state_dict(loaded, dtype),
        "arch": loaded.arch,
        "model_cfg": loaded.model_cfg,
        **(extra or {}),
    }
    return torch_save_atomic(payload, out)


def checkpoint_hash(path: str | Path) -> str:
    """sha256 of a checkpoint file, or of every file of a checkpoint directory (names and bytes)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
