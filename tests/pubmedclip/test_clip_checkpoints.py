"""Every checkpoint format round-trips; parity with OpenAI's CLIP class; one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from clip_testutils import close, embeddings, oracle_model

from pubmedclip.checkpoints import export_pubmedclip, load_clip
from infra.errors import UserError
from pubmedclip.models import LoadedClip, random_clip


def test_parity_with_openai_clip_class(tiny: LoadedClip, batch, tmp_path: Path) -> None:
    sd = tiny.model.state_dict()
    torch.save(sd, tmp_path / "openai.pt")
    ours = load_clip(tmp_path / "openai.pt")
    assert ours.arch == tiny.arch and ours.source_format == "openai"
    for a, b in zip(embeddings(ours.model, *batch), embeddings(oracle_model(sd), *batch)):
        assert close(a, b, 1e-5)


def test_openai_torchscript_archive(tiny: LoadedClip, batch, tmp_path: Path) -> None:
    oracle = oracle_model(tiny.model.state_dict())
    for key, value in (("input_resolution", tiny.preprocess["size"]), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(oracle, key):
            delattr(oracle, key)
        oracle.register_buffer(key, torch.tensor(value))  # released archives carry these entries
    torch.jit.trace(oracle, batch).save(str(tmp_path / "ViT.pt"))
    ours = load_clip(tmp_path / "ViT.pt")
    assert ours.arch == tiny.arch
    for a, b in zip(embeddings(ours.model, *batch), embeddings(oracle, *batch)):
        assert close(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_pubmedclip_pth_with_module_prefix(tiny: LoadedClip, batch, tmp_path: Path, dtype: torch.dtype) -> None:
    oracle = oracle_model({k: v.to(dtype) for k, v in tiny.model.state_dict().items()})
    wrapped = torch.nn.DataParallel(oracle)
    optimizer = torch.optim.Adam(oracle.parameters())
    checkpoint = {
        "best_epoch": 3,
        "state_dict": {k: v.to(dtype) for k, v in wrapped.state_dict().items()},
        "optimizer_state_dict": optimizer.state_dict(),
        "best_loss": 1.5,
    }
    torch.save(checkpoint, tmp_path / "pubmedclip_vit32.pth")
    ours = load_clip(tmp_path / "pubmedclip_vit32.pth")
    for name, param in ours.model.state_dict().items():  # stored values, not rounded again
        stored = checkpoint["state_dict"]["module." + name]
        assert torch.equal(param, stored.to(param.dtype)) and (
            param.dtype == torch.float32 or not param.is_floating_point()
        )
    for a, b in zip(embeddings(ours.model, *batch), embeddings(oracle, *batch)):
        assert close(a, b)


def test_fp32_weights_are_not_rounded_to_fp16(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sd = random_clip("tiny-vit").model.state_dict()
    torch.save({"state_dict": sd}, tmp_path / "ft.pth")
    loaded = load_clip(tmp_path / "ft.pth").model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())


def test_open_clip_training_checkpoint(tmp_path: Path) -> None:
    train_main = pytest.importorskip("open_clip_train.main").main
    train_main(
        [
            "--dataset-type",
            "synthetic",
            "--train-num-samples",
            "4",
            "--batch-size",
            "2",
            "--epochs",
            "1",
            "--model",
            "tiny-vit",
            "--logs",
            str(tmp_path),
            "--name",
            "run",
            "--device",
            "cpu",
            "--workers",
            "0",
            "--save-frequency",
            "1",
            "--report-to",
            "",
        ]
    )
    path = tmp_path / "run" / "checkpoints" / "epoch_1.pt"
    ours = load_clip(path)
    assert ours.arch == "tiny-vit" and ours.source_format == "open_clip-train"
    stored = torch.load(path, weights_only=True)["state_dict"]
    assert all(torch.equal(v, stored[k]) for k, v in ours.model.state_dict().items())


def test_open_clip_model_directory(tiny: LoadedClip, batch, tmp_path: Path) -> None:
    from open_clip.push_to_hf_hub import save_config_for_hf
    from safetensors.torch import save_file

    tiny.model.visual.image_mean, tiny.model.visual.image_std = (0.5,) * 3, (0.25,) * 3
    save_config_for_hf(tiny.model, tmp_path / "open_clip_config.json", tiny.model_cfg)
    save_file(tiny.model.state_dict(), tmp_path / "open_clip_model.safetensors")
    ours = load_clip(tmp_path)
    assert ours.preprocess["mean"] == [0.5] * 3 and ours.source_format == "open_clip-dir"
    for a, b in zip(embeddings(ours.model, *batch), embeddings(tiny.model, *batch)):
        assert close(a, b)


def test_hugging_face_clip_directory(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    common = {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "hidden_act": "quick_gelu",
    }
    config = transformers.CLIPConfig(
        text_config={**common, "vocab_size": 49408, "max_position_embeddings": 77, "eos_token_id": 49407},
        vision_config={**common, "image_size": 32, "patch_size": 8},
        projection_dim=48,
    )
    torch.manual_seed(0)
    hf = transformers.CLIPModel(config).eval()
    hf.save_pretrained(tmp_path)
    ours = load_clip(tmp_path)
    images = torch.randn(2, 3, 32, 32)  # [B, 3, S, S]
    tokens = ours.tokenizer(["a ct scan of the chest", "brain"])  # [B, 77]
    with torch.no_grad():
        expected = (
            hf.get_image_features(pixel_values=images).pooler_output,
            hf.get_text_features(input_ids=tokens).pooler_output,
        )
    for a, b in zip(embeddings(ours.model, images, tokens), expected):
        assert a.shape == (2, 48) and close(a, b)
    with pytest.raises(UserError, match="cannot be written as OpenAI CLIP weights"):
        export_pubmedclip(ours, tmp_path / "x.pth")  # 32-wide heads have no OpenAI layout


def test_export_builds_with_openai_build_model(tiny: LoadedClip, batch, tmp_path: Path) -> None:
    clip_model = pytest.importorskip("clip.model")
    out = export_pubmedclip(tiny, tmp_path / "pubmedclip_rn50.pth", extra={"best_epoch": 1})
    state_dict = torch.load(out, weights_only=True)["state_dict"]
    clip_model.build_model(dict(state_dict))  # OpenAI's own loader accepts every key
    reloaded = load_clip(out)
    for a, b in zip(embeddings(reloaded.model, *batch), embeddings(oracle_model(state_dict), *batch)):
        assert close(a, b)


def test_architecture_mismatch_names_both(tmp_path: Path) -> None:
    torch.save(random_clip("tiny-rn").model.state_dict(), tmp_path / "rn.pt")
    with pytest.raises(UserError) as info:
        load_clip(tmp_path / "rn.pt", arch="tiny-vit")
    message = str(info.value)
    assert "tiny-rn" in message and "tiny-vit" in message and "visual." in message and "\n" not in message


def test_bad_inputs_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown architecture 'ViT-Z/99'"):
        load_clip(None, arch="ViT-Z/99")
    torch.save(random_clip("tiny-vit").model.state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cannot read checkpoint") as info:
        load_clip(tmp_path / "cut.pt")
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="not found"):
        load_clip(tmp_path / "absent.pt")
    (tmp_path / "hfdir").mkdir()
    (tmp_path / "hfdir" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="not a CLIPModel"):
        load_clip(tmp_path / "hfdir")
