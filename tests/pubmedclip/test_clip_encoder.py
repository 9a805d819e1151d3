"""The frozen image encoder: the .npz that `pubmedclip encode` writes, the Python API and its feature cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clip_testutils import write_images
from PIL import Image

from pubmedclip import ImageEncoder
from pubmedclip.cli import main
from pubmedclip.models import random_clip


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.save(random_clip("tiny-vit").model.state_dict(), path)
    return path


def test_encode_writes_embeddings_and_relative_names(tmp_path: Path, checkpoint: Path) -> None:
    images = write_images(tmp_path / "imgs" / "sub", 3) + write_images(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"nope")
    out = tmp_path / "emb.npz"
    assert main(["encode", "--checkpoint", str(checkpoint), "--images", str(tmp_path / "imgs"), "--out", str(out)]) == 0
    stored = np.load(out)
    names = stored["names"].tolist()
    assert names == ["img000.jpg", "img001.jpg", "sub/img000.jpg", "sub/img001.jpg", "sub/img002.jpg"]
    assert stored["embeddings"].shape == (5, 64) and stored["embeddings"].dtype == np.float32

    encoder = ImageEncoder(checkpoint)
    expected = encoder.encode([Image.open(tmp_path / "imgs" / name) for name in names])  # [5, 64]
    assert np.allclose(stored["embeddings"], expected.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.linalg.norm(stored["embeddings"], axis=1), 1.0)

    assert (
        main(
            [
                "encode",
                "--checkpoint",
                str(checkpoint),
                "--images",
                str(tmp_path / "imgs"),
                "--out",
                str(out),
                "--normalize",
            ]
        )
        == 0
    )
    assert np.allclose(np.linalg.norm(np.load(out)["embeddings"], axis=1), 1.0, atol=1e-5)
    assert len(images) == 5


def test_encoder_interface(checkpoint: Path) -> None:
    encoder = ImageEncoder(checkpoint)
    spec = encoder.input_spec
    assert encoder.output_dim == 64 and not encoder.trainable
    assert (spec.key, spec.size, spec.channels, spec.resize_mode, spec.interpolation) == (
        "rgb32", 32, 3, "shortest", "bicubic")
    batch = torch.randn(2, 3, spec.size, spec.size)  # [B, 3, S, S]
    assert encoder.encode(batch).shape == (2, 64)
    assert torch.equal(encoder.encode(batch), encoder.model.encode_image(batch))
    assert {k.split(".")[0] for k in encoder.state_dict()} == {"visual"}  # the image tower alone


def test_feature_cache_is_reused_across_encoders(tmp_path: Path, checkpoint: Path) -> None:
    images = write_images(tmp_path / "imgs", 4)
    (tmp_path / "imgs" / "copy.jpg").write_bytes(images[0].read_bytes())  # the same bytes under another name
    first = ImageEncoder(checkpoint, cache_dir=tmp_path / "cache")
    features, ok = first.encode_files([*images, tmp_path / "imgs" / "copy.jpg"])
    assert ok.all() and np.array_equal(features[0], features[-1])

    second = ImageEncoder(checkpoint, cache_dir=tmp_path / "cache")
    second.loaded.model.encode_image = None  # any model call would fail: everything must come from the cache
    cached, ok = second.encode_files(images)
    assert ok.all() and np.array_equal(features[:4], cached) and second.identity() == first.identity()

    (folder,) = (tmp_path / "cache").iterdir()
    meta = json.loads((folder / "meta.json").read_text())
    assert folder.name.startswith("clip-") and meta["architecture"]["vision_cfg"]["patch_size"] == 8
    assert meta["items"] == "sha256 of the image file" and meta["input_spec"]["mean"] == list(second.input_spec.mean)
    other = ImageEncoder(checkpoint, cache_dir=tmp_path / "cache")
    other.loaded.preprocess["interpolation"] = "bilinear"
    assert ImageEncoder(loaded=other.loaded).identity() != first.identity()  # preprocessing is part of it
    torch.manual_seed(1)
    retrained = ImageEncoder(loaded=random_clip("tiny-vit"), cache_dir=tmp_path / "cache")
    assert retrained.identity() != first.identity()
    retrained.encode_files(images)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_encode_bad_inputs(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "encode",
                "--checkpoint",
                str(checkpoint),
                "--images",
                str(tmp_path / "absent"),
                "--out",
                str(tmp_path / "x.npz"),
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip() == f"error: image directory not found: {tmp_path / 'absent'}"
    write_images(tmp_path / "imgs", 1)
    assert (
        main(["encode", "--arch", "ViT-Q/7", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "x.npz")]) == 2
    )
    assert "unknown architecture 'ViT-Q/7'" in capsys.readouterr().err


def test_linear_probe_on_slake(data_root: Path, tmp_path: Path, checkpoint: Path) -> None:
    out = tmp_path / "probe.json"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(checkpoint),
                "--task",
                "linear-probe",
                "--label",
                "modality",
                "--data",
                str(data_root / "slake" / "Slake1.0"),
                "--k-shot",
                "all,2",
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["n_train"] == 450 and result["n_test"] == 96
    assert set(result["results"]) == {"all", "2-shot"} and result["results"]["2-shot"]["draws"] == 3
    assert result["results"]["all"]["accuracy"] > 60  # modality is easy even from random features
