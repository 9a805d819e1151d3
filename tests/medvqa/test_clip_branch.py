"""The CLIP visual branch: a PubMedCLIP-format checkpoint in MEVF-BAN and QCR, frozen (features cached) beside a
fine-tuned CDAE, on the synthetic data and on real VQA-RAD."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import medvqa.train
from data_prep.images import render
from data_prep.input_spec import image_spec
from infra.errors import UserError
from medvqa.cli import main as cli_main
from medvqa.evaluate import main as evaluate_main
from medvqa.models import create_encoder
from medvqa.models.clip import CLIPEncoder
from medvqa.models.visual import images_to_tensor
from medvqa.train import main as train_main
from pubmedclip.checkpoints import export_pubmedclip
from pubmedclip.encoder import ImageEncoder
from pubmedclip.models import LoadedClip, random_clip

ROOT = Path(__file__).resolve().parents[2]
MEVF_TINY = str(ROOT / "configs" / "synthetic" / "mevf_ban_tiny.yaml")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)


def tiny_checkpoint(arch: str, out: Path) -> tuple[LoadedClip, Path]:
    """A random tiny CLIP written as the released PubMedCLIP files are (OpenAI key names under state_dict)."""
    torch.manual_seed(0)
    loaded = random_clip(arch)
    return loaded, export_pubmedclip(loaded, out / f"pubmedclip_{arch}.pth", extra={"best_epoch": 3})


@pytest.mark.parametrize("arch", ["tiny-vit", "tiny-rn"])
def test_the_branch_is_the_checkpoints_image_embedding(arch: str, tmp_path: Path) -> None:
    loaded, path = tiny_checkpoint(arch, tmp_path)
    branch = create_encoder("clip", {"weights": str(path)})
    size = loaded.preprocess["size"]
    assert branch.input_spec.key == f"rgb{size}" and branch.input_spec.mean == pytest.approx(OPENAI_MEAN)
    assert branch.output_dim == 64 and not any(name.startswith("transformer.") for name in branch.state_dict())
    pixels = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)  # an rgb cache
    ours = branch.eval().encode(images_to_tensor(pixels, branch.input_spec))
    served = ImageEncoder(path)  # pubmedclip's frozen encoder
    theirs = served.encode([Image.fromarray(p) for p in pixels])  # [3, 64]
    assert ours.shape == (3, 64) and torch.allclose(ours, theirs, atol=1e-5)
    assert branch.input_spec == served.input_spec and branch.identity() == served.identity()


def test_the_rgb_cache_is_clips_preprocessing(tmp_path: Path) -> None:
    """A non-square image, cached as rgb64 and normalised by the branch, is what CLIP's own transform gives."""
    _, path = tiny_checkpoint("tiny-rn", tmp_path)
    branch, served = create_encoder("clip", {"weights": str(path)}), ImageEncoder(path)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 150, 3), dtype=np.uint8))
    cached = render(image, image_spec(branch.input_spec.key))[None]  # [1, 64, 64, 3] uint8
    ours = images_to_tensor(cached, branch.input_spec)[0]
    assert torch.allclose(ours, served.preprocess(image), atol=0.02)  # uint8 rounding of the resized pixels


@pytest.mark.parametrize("name", ["gray7", "rgb1025", "rgb0224", "RGB224", "rgb", "hsv64"])
def test_image_spec_names_are_checked(name: str) -> None:
    with pytest.raises(UserError, match=f"unknown image spec '{name}': expected gray<N> or rgb<N>"):
        image_spec(name)
    assert image_spec("rgb336").shape == (336, 336, 3) and image_spec("gray8").resize_mode == "squash"


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("resize_mode", "squash", "resize_mode 'squash': the rgb64 image cache is made with 'shortest'"),
    ("interpolation", "bilinear", "interpolation 'bilinear': the rgb64 image cache is made with 'bicubic'"),
    ("size", [64, 48], r"CLIP input size \[64, 48\] is not square"),
    ("resize_mode", "longest", r"input spec rgb64: resize_mode 'longest' \(expected one of squash, shortest\)"),
])
def test_preprocessing_the_caches_cannot_match_is_refused(setting: str, value, message: str) -> None:
    loaded = random_clip("tiny-rn")
    loaded.preprocess[setting] = value
    with pytest.raises(UserError, match=message):
        CLIPEncoder(ImageEncoder(loaded=loaded))
    loaded.preprocess.update(size=[64, 64], resize_mode="shortest", interpolation="bicubic")
    assert CLIPEncoder(ImageEncoder(loaded=loaded)).input_spec.key == "rgb64"


def test_a_hugging_face_folder_brings_its_preprocessing(tmp_path: Path) -> None:
    """mean / std 0.5 in preprocessor_config.json: the loaded spec and the VQA branch normalise with them."""
    transformers = pytest.importorskip("transformers")
    common = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = transformers.CLIPConfig(
        text_config={**common, "vocab_size": 49408, "max_position_embeddings": 77, "eos_token_id": 49407},
        vision_config={**common, "image_size": 32, "patch_size": 8}, projection_dim=16)
    torch.manual_seed(0)
    transformers.CLIPModel(config).save_pretrained(tmp_path)
    transformers.CLIPImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3, size={"shortest_edge": 32},
                                    crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    spec = ImageEncoder(tmp_path).input_spec
    assert (spec.key, spec.mean, spec.std, spec.interpolation, spec.resize_mode) == (
        "rgb32", (0.5,) * 3, (0.5,) * 3, "bicubic", "shortest")
    branch = create_encoder("clip", {"weights": str(tmp_path)})
    assert branch.input_spec == spec and branch.output_dim == 16
    white = np.full((1, 32, 32, 3), 255, dtype=np.uint8)
    assert torch.equal(images_to_tensor(white, branch.input_spec), torch.ones(1, 3, 32, 32))  # (1 - 0.5) / 0.5


@pytest.mark.parametrize("kind", ["cdae", "maml"])
def test_mevf_weights_as_clip_weights_are_a_one_line_error(tmp_path: Path, data_root: Path, kind: str) -> None:
    name = {"cdae": "pretrained_ae.pth", "maml": "pretrained_maml.weights"}[kind]
    path = data_root / "vqa_rad" / "data_RAD" / name
    held = {"cdae": r"its 14 tensors \(conv1.weight, conv1.bias, conv2.weight, …\) have no visual or text tower keys",
            "maml": "it is a plain Python pickle"}[kind]
    with pytest.raises(UserError, match=f"{name} is not a CLIP checkpoint: {held}"):
        create_encoder("clip", {"weights": str(path), "arch": "ViT-B/32"})


def test_a_clip_checkpoint_without_its_architecture_names_the_setting(tmp_path: Path) -> None:
    state = {k: v for k, v in random_clip("tiny-vit").model.state_dict().items() if k != "token_embedding.weight"}
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(UserError, match=r"give the architecture \(model.encoders.clip.arch\)$"):
        create_encoder("clip", {"weights": str(tmp_path / "partial.pt")})


@pytest.fixture(scope="module")
def synthetic_rgb(prepare_synthetic) -> Path:
    return prepare_synthetic("gray128,rgb32,rgb64")


def test_a_clip_branch_without_checkpoint_is_a_one_line_error(synthetic_rgb: Path, tmp_path: Path) -> None:
    needs = "model: visual encoder 'clip' needs a checkpoint: set model.encoders.clip.weights"
    with pytest.raises(UserError, match=needs):
        train_main(["--config", MEVF_TINY, "--out", str(tmp_path / "run"), f"data.root={synthetic_rgb}",
                    "model.visual=[clip, cdae]"])
    with pytest.raises(UserError, match=r"freeze_visual names \['maml'\], which are not visual encoders"):
        train_main(["--config", MEVF_TINY, "--out", str(tmp_path / "run"), f"data.root={synthetic_rgb}",
                    "model.visual=[cdae]", "model.freeze_visual=[maml]"])
    with pytest.raises(UserError, match="model: .*Is a directory"):  # only a CLIP checkpoint may be a folder
        train_main(["--config", MEVF_TINY, "--out", str(tmp_path / "run"), f"data.root={synthetic_rgb}",
                    f"model.encoders.cdae.weights={tmp_path}"])


def test_frozen_clip_beside_a_finetuned_cdae(synthetic_rgb: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """tiny-rn has BatchNorm: frozen, its statistics stay the checkpoint's; the CDAE trains; CLIP features are
    cached and evaluation reads them back; a run stopped after its first epoch resumes from a checkpoint that
    leaves the tower's parameters out."""
    loaded, path = tiny_checkpoint("tiny-rn", tmp_path)
    run, cache = tmp_path / "run", tmp_path / "cache"
    command = ["--config", MEVF_TINY, "--out", str(run), f"data.root={synthetic_rgb}", "train.epochs=2",
               "model.visual=[clip, cdae]", f"model.encoders.clip.weights={path}", "model.freeze_visual=[clip]",
               f"train.feature_cache={cache}"]

    def stop(history: list[dict], out: Path) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # stopped once the first epoch's checkpoint is written
        patch.setattr(medvqa.train, "write_metrics", stop)
        with pytest.raises(KeyboardInterrupt):
            train_main(command)
    checkpoint = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["epoch"] == 0
    state = checkpoint["model"]
    tower = {k.removeprefix("visual.encoders.clip.clip.visual."): v for k, v in state.items()
             if k.startswith("visual.encoders.clip.")}
    buffers = {k.removeprefix("visual."): v for k, v in loaded.model.visual.named_buffers()}
    assert tower.keys() == buffers.keys() and any("running_mean" in k for k in tower)  # parameters left out
    assert all(torch.equal(tower[k], buffers[k]) for k in tower)  # frozen: the checkpoint's BatchNorm statistics
    assert list(checkpoint["encoders_from_files"]) == ["clip"]  # read again from model.encoders.clip.weights
    assert [p.name.split("-")[0] for p in cache.iterdir()] == ["clip"]  # the CDAE is fine-tuned, not cached
    fresh = create_encoder("cdae").state_dict()
    assert not torch.equal(state["visual.encoders.cdae.conv1.weight"], fresh["conv1.weight"])
    assert train_main(command) == 0  # resumed
    assert [row["epoch"] for row in json.loads((run / "metrics.json").read_text())] == [0, 1]
    trained = json.loads((run / "results.json").read_text())
    (cached,) = cache.glob("*/vectors.npz")
    written = cached.stat().st_mtime_ns
    assert evaluate_main(["--run", str(run)]) == 0
    assert json.loads((run / "results.json").read_text())["overall"] == trained["overall"]
    assert cached.stat().st_mtime_ns == written  # evaluation read the features, it did not encode again


def test_a_finetuned_clip_branch_trains_its_tower(synthetic_rgb: Path, tmp_path: Path) -> None:
    loaded, path = tiny_checkpoint("tiny-vit", tmp_path)
    run = tmp_path / "run"
    assert train_main(["--config", MEVF_TINY, "--out", str(run), f"data.root={synthetic_rgb}", "train.epochs=1",
                       "model.visual=[clip]", f"model.encoders.clip.weights={path}"]) == 0
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    before = loaded.model.state_dict()
    changed = [k for k in before if k.startswith("visual.")
               and not torch.equal(state[f"visual.encoders.clip.clip.{k}"], before[k])]
    assert "visual.conv1.weight" in changed and "visual.proj" in changed
    assert not (synthetic_rgb / "feature_cache").exists()  # nothing frozen, nothing cached


def test_pubmedclip_qcr_config_on_real_vqa_rad(data_root: Path, tmp_path: Path) -> None:
    """The shipped PubMedCLIP QCR config on real images and QA, a tiny CLIP in place of the released weights
    (the CDAE frozen too, so that an epoch takes seconds)."""
    data = tmp_path / "vqa_rad"
    cli_main(["prepare", "vqa-rad", "--source", str(data_root / "vqa_rad" / "data_RAD"), "--out", str(data),
              "--glove", str(data_root / "glove" / "glove6b_300d_subset.npz"), "--image-specs", "gray128,rgb32"])
    _, path = tiny_checkpoint("tiny-vit", tmp_path)
    run = tmp_path / "run"
    assert train_main(["--config", str(ROOT / "configs" / "vqa_rad" / "qcr_pubmedclip.yaml"), "--out", str(run),
                       f"data.root={data}", f"model.encoders.clip.weights={path}", "model.freeze_visual=true",
                       "model.head.hidden_dim=64", "train.batch_size=64", "train.epochs=1", "type_classifier.epochs=1",
                       "train.progress=false"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["n"] == 451 and 0 < results["overall"] < 100
    assert {p.name.split("-")[0] for p in (data / "feature_cache").iterdir()} == {"clip", "cdae"}


def test_a_changed_frozen_weights_file_is_refused(synthetic_rgb: Path, tmp_path: Path) -> None:
    """Checkpoints leave out the frozen tower's parameters; evaluation with other weights in its file stops."""
    _, path = tiny_checkpoint("tiny-vit", tmp_path)
    run = tmp_path / "run"
    assert train_main(["--config", MEVF_TINY, "--out", str(run), f"data.root={synthetic_rgb}", "train.epochs=1",
                       "model.visual=[clip]", f"model.encoders.clip.weights={path}", "model.freeze_visual=true",
                       f"train.feature_cache={tmp_path / 'cache'}"]) == 0
    assert evaluate_main(["--run", str(run)]) == 0
    export_pubmedclip(random_clip("tiny-vit"), path)  # other random weights in the same file
    with pytest.raises(UserError, match="the weights file of model.encoders.clip holds other weights than the frozen"):
        evaluate_main(["--run", str(run)])
