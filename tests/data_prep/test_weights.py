"""MEVF encoder weights carried beside the prepared data: linked from the source folder or from
--encoder-weights, named in summary.json, found by ``PreparedDataset.encoder_weights``, outside the digests."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from data_prep.prepare import ENCODER_WEIGHTS
from infra.errors import UserError
from medvqa.cli import main
from medvqa.data import PreparedDataset

DIGESTED = ("records", "dictionary", "embeddings", "images:gray84")


def _prepare(source: Path, out: Path, *extra: str) -> int:
    return main(["prepare", "vqa-rad", "--source", str(source), "--out", str(out), "--image-specs", "gray84", *extra])


@pytest.fixture()
def published_weights(data_root: Path) -> Path:
    return data_root / "vqa_rad" / "data_RAD"


def test_weights_in_the_source_folder_are_linked(small_rad: Path, published_weights: Path, tmp_path: Path) -> None:
    for file in ENCODER_WEIGHTS.values():
        shutil.copy(published_weights / file, small_rad)
    out = tmp_path / "out"
    assert _prepare(small_rad, out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["encoder_weights"] == {"maml": "weights/pretrained_maml.weights",
                                          "cdae": "weights/pretrained_ae.pth"}
    ds = PreparedDataset(out)
    for name, file in ENCODER_WEIGHTS.items():
        carried = ds.encoder_weights(name)
        assert carried == (out / "weights" / file).absolute() and carried.is_absolute()
        assert os.path.samefile(carried, small_rad / file)  # a hard link, not a copy
    assert ds.encoder_weights("clip") is None


def test_encoder_weights_folder_and_digests(small_rad: Path, published_weights: Path, tmp_path: Path) -> None:
    assert _prepare(small_rad, tmp_path / "plain") == 0
    assert _prepare(small_rad, tmp_path / "carried", "--encoder-weights", str(published_weights)) == 0
    plain, carried = PreparedDataset(tmp_path / "plain"), PreparedDataset(tmp_path / "carried")
    assert plain.summary["encoder_weights"] == {} and plain.encoder_weights("maml") is None
    assert not (tmp_path / "plain" / "weights").exists()
    assert carried.encoder_weights("cdae").read_bytes() == (published_weights / "pretrained_ae.pth").read_bytes()
    assert [plain.digest(p) for p in DIGESTED] == [carried.digest(p) for p in DIGESTED]


def test_weights_are_copied_where_links_fail(small_rad: Path, published_weights: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(source: Path, target: Path) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    out = tmp_path / "out"
    assert _prepare(small_rad, out, "--encoder-weights", str(published_weights)) == 0
    maml = PreparedDataset(out).encoder_weights("maml")
    assert not os.path.samefile(maml, published_weights / "pretrained_maml.weights")
    assert maml.read_bytes() == (published_weights / "pretrained_maml.weights").read_bytes()


def test_bad_encoder_weights_folder(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert _prepare(small_rad, tmp_path / "out", "--encoder-weights", str(tmp_path / "nowhere")) == 2
    assert f"--encoder-weights {tmp_path / 'nowhere'}: folder not found" in capsys.readouterr().err
    assert _prepare(small_rad, tmp_path / "out", "--encoder-weights", str(small_rad / "images")) == 2
    err = capsys.readouterr().err
    assert "holds none of pretrained_maml.weights, pretrained_ae.pth" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_missing_carried_file_is_named(small_rad: Path, published_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _prepare(small_rad, out, "--encoder-weights", str(published_weights)) == 0
    (out / "weights" / "pretrained_ae.pth").unlink()
    with pytest.raises(UserError, match="weights/pretrained_ae.pth for encoder 'cdae', but it is missing"):
        PreparedDataset(out).encoder_weights("cdae")
