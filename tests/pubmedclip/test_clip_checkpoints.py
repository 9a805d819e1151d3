"""Every checkpoint format round-trips; parity with OpenAI's CLIP class; one-line errors on bad input."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from clip_testutils import close, embeddings, oracle_model, write_images

from infra.errors import UserError
from pubmedclip.checkpoints import export_pubmedclip, hf_preprocess, load_clip
from pubmedclip.cli import main
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


@pytest.mark.parametrize(("config", "expected"), [
    ({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 3, "size": {"shortest_edge": 336},
      "crop_size": {"height": 336, "width": 336}},
     {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "size": 336, "resize_mode": "shortest"}),
    ({"size": 224, "crop_size": 224, "resample": 2, "do_normalize": False},  # older processors: plain ints
     {"mean": [0.0] * 3, "std": [1.0] * 3, "interpolation": "bilinear", "size": 224, "resize_mode": "shortest"}),
    ({"size": {"height": 64, "width": 64}, "do_center_crop": False}, {"size": 64, "resize_mode": "squash"}),
])
def test_hugging_face_preprocessing_is_read(tmp_path: Path, config: dict, expected: dict) -> None:
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    assert hf_preprocess(tmp_path) == expected
    assert hf_preprocess(tmp_path / "absent") == {}


@pytest.mark.parametrize(("config", "message"), [
    ({"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}},
     r"resize \{'shortest_edge': 256\} then crop \{'height': 224, 'width': 224\} is not supported"),
    ({"resample": 7}, "resample 7 is not a PIL filter"),
])
def test_hugging_face_preprocessing_we_cannot_follow_is_refused(tmp_path: Path, config: dict, message: str) -> None:
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=message):
        hf_preprocess(tmp_path)


def test_exported_files_keep_their_preprocessing(tmp_path: Path) -> None:
    loaded = random_clip("tiny-vit")
    loaded.preprocess.update(mean=[0.5] * 3, std=[0.25] * 3)
    reloaded = load_clip(export_pubmedclip(loaded, tmp_path / "pubmedclip.pth"))
    assert reloaded.input_spec.mean == (0.5,) * 3 and reloaded.input_spec.std == (0.25,) * 3


def _cdae_weights(path: Path) -> Path:
    torch.save({f"conv{i}.weight": torch.zeros(2, 2, 3, 3) for i in range(1, 6)}, path)
    return path


def _plain_pickle(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"conv1": np.zeros((3, 3, 1, 4), np.float32)}, protocol=3))
    return path


def _training_state(path: Path) -> Path:
    torch.save({"epoch": 3, "model_state": {"w": torch.zeros(1)}, "optimizer_state": {}}, path)
    return path


def _hf_weights(path: Path) -> Path:
    torch.save({"vision_model.embeddings.patch_embedding.weight": torch.zeros(1)}, path)
    return path


@pytest.mark.parametrize(("write", "held"), [
    (_cdae_weights,
     r"its 5 tensors \(conv1.weight, conv2.weight, conv3.weight, …\) have no visual or text tower keys"),
    (_plain_pickle, "it is a plain Python pickle, not a torch, TorchScript or safetensors file"),
    (_training_state, r"it holds no tensors \(its entries: epoch, model_state, optimizer_state\)"),
])
@pytest.mark.parametrize("arch", [None, "tiny-vit"])
def test_a_file_that_is_not_a_clip_says_what_it_holds(tmp_path: Path, write, held: str, arch: str | None,
                                                      capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path / "weights.pth")
    with pytest.raises(UserError, match=f"^{re.escape(str(path))} is not a CLIP checkpoint: {held}$"):
        load_clip(path, arch)
    write_images(tmp_path / "imgs", 1)
    assert main(["encode", "--checkpoint", str(path), "--images", str(tmp_path / "imgs"),
                 "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path} is not a CLIP checkpoint") and "\n" not in err


def test_misplaced_clip_weights_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds the weights of a Hugging Face CLIPModel: give its folder"):
        load_clip(_hf_weights(tmp_path / "pytorch_model.bin"))
    state = random_clip("tiny-vit").model.state_dict()
    torch.save({k: v for k, v in state.items() if k != "token_embedding.weight"}, tmp_path / "partial.pt")
    with pytest.raises(UserError, match=r"partial.pt: cannot infer the architecture .*architecture \(--arch\)$"):
        load_clip(tmp_path / "partial.pt")


@pytest.mark.parametrize("name", ["pretrained_ae.pth", "pretrained_maml.weights"])
def test_published_mevf_weights_are_not_clip_checkpoints(data_root: Path, name: str) -> None:
    path = data_root / "vqa_rad" / "data_RAD" / name
    with pytest.raises(UserError, match=f"^{re.escape(str(path))} is not a CLIP checkpoint: "):
        load_clip(path)
