"""Exports load back with the library that reads them: transformers, open_clip, OpenAI's clip, PubMedCLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infra.errors import UserError
from pubmedclip.checkpoints import load_clip
from pubmedclip.cli import main
from pubmedclip.exports import export
from pubmedclip.models import LoadedClip, image_transform, random_clip

TEXTS = ["axial ct of the chest", "mri of the brain with contrast"]


def _features(output) -> torch.Tensor:
    return output.pooler_output if hasattr(output, "pooler_output") else output  # transformers 5 wraps them


@pytest.fixture(scope="module")
def vit() -> LoadedClip:
    torch.manual_seed(3)
    return random_clip("tiny-vit")


def test_hugging_face_folder(vit: LoadedClip, tmp_path: Path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    export(vit, tmp_path / "hf", "hf")
    model, processor = CLIPModel.from_pretrained(tmp_path / "hf").eval(), CLIPProcessor.from_pretrained(tmp_path / "hf")
    tokens = processor(text=TEXTS, return_tensors="pt", padding=True)
    image = Image.fromarray((np.random.default_rng(0).random((80, 80, 3)) * 255).astype(np.uint8))
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]  # [1, 3, 32, 32]
    assert torch.allclose(pixels[0], image_transform(vit.preprocess)(image), atol=0.05)
    with torch.no_grad():
        torch.testing.assert_close(_features(model.get_text_features(**tokens)), vit.model.encode_text(vit.tokenizer(TEXTS)),
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(_features(model.get_image_features(pixel_values=pixels)),
                                   vit.model.encode_image(pixels), atol=1e-5, rtol=1e-4)
    assert load_clip(tmp_path / "hf").arch == "tiny-vit"  # and this toolkit reads it back


def test_open_clip_folder(vit: LoadedClip, tmp_path: Path) -> None:
    import open_clip

    export(vit, tmp_path / "oc", "open_clip")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{tmp_path / 'oc'}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{tmp_path / 'oc'}")
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval().encode_image(images), vit.model.encode_image(images))
        torch.testing.assert_close(model.encode_text(tokenizer(TEXTS)), vit.model.encode_text(vit.tokenizer(TEXTS)))


def test_openai_clip_load_on_a_resnet(tmp_path: Path) -> None:
    clip = pytest.importorskip("clip")
    torch.manual_seed(4)
    rn = random_clip("tiny-rn")
    export(rn, tmp_path / "rn.pt", "openai")
    model, _ = clip.load(str(tmp_path / "rn.pt"), device="cpu", jit=False)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # OpenAI's build_model rounds the weights through fp16
        torch.testing.assert_close(model.encode_image(images).float(), rn.model.encode_image(images), atol=5e-3, rtol=5e-3)
    with pytest.raises(UserError, match="ResNet image tower"):
        export(rn, tmp_path / "hf", "hf")


def test_export_command_formats(vit: LoadedClip, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export(vit, tmp_path / "src.pth")
    for fmt, out in (("open_clip", tmp_path / "oc"), ("openai", tmp_path / "o.pt"), ("pubmedclip", tmp_path / "p.pth")):
        assert main(["export", "--checkpoint", str(tmp_path / "src.pth"), "--format", fmt, "--out", str(out)]) == 0
        reloaded = load_clip(out)
        assert all(torch.equal(a, b) for a, b in zip(reloaded.model.state_dict().values(),
                                                     vit.model.state_dict().values()))
    assert main(["export", "--checkpoint", str(tmp_path / "src.pth"), "--format", "onnx", "--out", "x"]) == 2
    assert "invalid choice: 'onnx'" in capsys.readouterr().err
