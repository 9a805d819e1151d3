"""Write a CLIP in the formats other people's code reads.

- ``pubmedclip``: ``{'state_dict': ...}`` as PubMedCLIP's code loads it (``checkpoints.export_pubmedclip``);
- ``hf``: a Hugging Face ``CLIPModel`` folder (config.json, model.safetensors, preprocessor and tokenizer files)
  that ``transformers.CLIPModel.from_pretrained`` and ``CLIPProcessor.from_pretrained`` read (ViT towers only:
  the Hugging Face class has no ResNet image tower);
- ``open_clip``: a folder with ``open_clip_config.json`` (model and preprocessing config) and
  ``open_clip_model.safetensors``, which ``open_clip.create_model_and_transforms('local-dir:<folder>')`` reads
  (and ``hf-hub:<repo>`` once the folder is uploaded as a repository);
- ``openai``: the bare state dict under OpenAI's names, which OpenAI's ``clip.load(path)`` builds.

Every writer goes through ``openai_state_dict``, so a network OpenAI's CLIP class cannot express is refused
with one line; files are written atomically and a folder is replaced only once it is complete.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from infra.errors import UserError
from infra.files import replace_folder_atomic, torch_save_atomic, write_text_atomic
from pubmedclip.checkpoints import HF_NAMES, HF_TOWERS, HF_TRANSPOSED, export_pubmedclip, hf_block_names, openai_state_dict
from pubmedclip.models import LoadedClip

_HF_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3}  # PIL filter codes
def export_openai(loaded: LoadedClip, out: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """The bare OpenAI-layout state dict: ``clip.load(out)`` builds it (``clip.model.build_model``)."""
    return torch_save_atomic(openai_state_dict(loaded, dtype), out)


def export_open_clip(loaded: LoadedClip, out: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """An open_clip model folder: ``open_clip_config.json`` + ``open_clip_model.safetensors``."""
    from safetensors.torch import save_file

    openai_state_dict(loaded)  # refuses networks without an OpenAI layout, as the other exports do
    weights = {k: v.detach().to("cpu", dtype).contiguous() for k, v in loaded.model.state_dict().items()}
    config = {"model_cfg": loaded.model_cfg, "preprocess_cfg": loaded.preprocess}

    def write(folder: Path) -> None:
        write_text_atomic(folder / "open_clip_config.json", json.dumps(config, indent=2) + "\n")
        save_file(weights, str(folder / "open_clip_model.safetensors"))

    return replace_folder_atomic(out, write)


def hf_state_dict(sd: dict[str, torch.Tensor], text_layers: int, vision_layers: int) -> dict[str, torch.Tensor]:
    """OpenAI-layout ViT CLIP weights under Hugging Face ``CLIPModel`` names (the inverse of ``hf_to_openai``)."""
    out = {theirs: sd[ours] for ours, theirs in HF_NAMES.items()}
    out.update({theirs: sd[ours].T for ours, theirs in HF_TRANSPOSED.items()})  # [embed_dim, width]
    out["logit_scale"] = out["logit_scale"].reshape(())
    for (prefix, hf_prefix), layers in zip(HF_TOWERS.items(), (text_layers, vision_layers)):
        out.update({theirs: sd[ours] for ours, theirs in hf_block_names(prefix, hf_prefix, layers).items()})
        for i in range(layers):
            src, dst = f"{prefix}transformer.resblocks.{i}.", f"{hf_prefix}encoder.layers.{i}."
            for kind in ("weight", "bias"):
                for name, part in zip("qkv", sd[f"{src}attn.in_proj_{kind}"].chunk(3, dim=0)):  # [width, ...] each
                    out[f"{dst}self_attn.{name}_proj.{kind}"] = part
    return {k: v.contiguous() for k, v in out.items()}


def _hf_config(loaded: LoadedClip):
    from transformers import CLIPConfig

    cfg = loaded.model_cfg
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    if isinstance(vision.get("layers"), (list, tuple)) or not vision.get("patch_size"):
        raise UserError(f"architecture {loaded.arch} has a ResNet image tower: a Hugging Face CLIPModel holds ViT "
                        "towers only (export it as open_clip, openai or pubmedclip)")
    act = "quick_gelu" if cfg.get("quick_gelu") else "gelu"
    vision_width, text_width = vision["width"], text.get("width", 512)
    return CLIPConfig(
        projection_dim=cfg["embed_dim"],
        text_config={"vocab_size": text.get("vocab_size", 49408), "hidden_size": text_width,
                     "intermediate_size": int(text_width * text.get("mlp_ratio", 4.0)),
                     "num_hidden_layers": text.get("layers", 12), "num_attention_heads": text.get("heads", 8),
                     "max_position_embeddings": text.get("context_length", 77), "hidden_act": act,
                     "projection_dim": cfg["embed_dim"], "bos_token_id": 49406, "eos_token_id": 49407,
                     "pad_token_id": 49407},
        vision_config={"hidden_size": vision_width, "intermediate_size": int(vision_width * vision.get("mlp_ratio", 4.0)),
                       "num_hidden_layers": vision["layers"],
                       "num_attention_heads": vision_width // vision.get("head_width", 64),
                       "image_size": vision["image_size"], "patch_size": vision["patch_size"], "hidden_act": act,
                       "projection_dim": cfg["embed_dim"]},
    )


def _hf_image_processor(loaded: LoadedClip):
    from transformers import CLIPImageProcessor

    pp = loaded.preprocess
    side = loaded.input_spec.size
    shortest = pp.get("resize_mode", "shortest") == "shortest"
    return CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": side} if shortest else {"height": side, "width": side},
        do_center_crop=shortest, crop_size={"height": side, "width": side},
        resample=_HF_RESAMPLE[pp["interpolation"]], image_mean=list(pp["mean"]), image_std=list(pp["std"]),
    )


def _hf_tokenizer(folder: Path, context_length: int):
    """open_clip's byte-pair vocabulary as Hugging Face ``CLIPTokenizer`` files (the same ids and merges)."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    simple = SimpleTokenizer()
    specials = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {specials.get(token, token): i for token, i in simple.encoder.items()}
    merges = sorted(simple.bpe_ranks, key=simple.bpe_ranks.get)
    write_text_atomic(folder / "vocab.json", json.dumps(vocab, ensure_ascii=False))
    write_text_atomic(folder / "merges.txt", "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=context_length,
                         pad_token="<|endoftext|>")


def export_hf(loaded: LoadedClip, out: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """A Hugging Face ``CLIPModel`` folder with its ``CLIPProcessor`` (image processor + tokenizer)."""
    from transformers import CLIPModel, CLIPProcessor

    config = _hf_config(loaded)
    sd = hf_state_dict(openai_state_dict(loaded, torch.float32), config.text_config.num_hidden_layers,
                       config.vision_config.num_hidden_layers)
    model = CLIPModel(config).eval()
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise UserError(f"Hugging Face CLIPModel export of {loaded.arch}: missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]}")

    def write(folder: Path) -> None:
        model.to(dtype).save_pretrained(folder, safe_serialization=True)
        tokenizer = _hf_tokenizer(folder, config.text_config.max_position_embeddings)
        CLIPProcessor(image_processor=_hf_image_processor(loaded), tokenizer=tokenizer).save_pretrained(folder)

    return replace_folder_atomic(out, write)


EXPORTS: dict[str, Callable[[LoadedClip, str | Path, torch.dtype], Path]] = {
    "pubmedclip": export_pubmedclip,
    "hf": export_hf,
    "open_clip": export_open_clip,
    "openai": export_openai,
}


def export(loaded: LoadedClip, out: str | Path, fmt: str = "pubmedclip", dtype: torch.dtype = torch.float32) -> Path:
    """Write ``loaded`` to ``out`` in format ``fmt`` (one of ``EXPORTS``)."""
    if fmt not in EXPORTS:
        raise UserError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORTS)})")
    return EXPORTS[fmt](loaded, out, dtype)
