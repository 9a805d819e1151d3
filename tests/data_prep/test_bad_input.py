"""Bad input: one-line error naming the file or field, exit status 2, no output left behind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from medvqa.cli import main


def _run(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str]:
    status = main(argv)
    err = capsys.readouterr().err.strip()
    return status, err


def _prepare(source: Path, out: Path) -> list[str]:
    return ["prepare", "vqa-rad", "--source", str(source), "--out", str(out), "--image-specs", "gray84"]


def test_small_copy_prepares(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, err = _run(capsys, _prepare(small_rad, tmp_path / "out"))
    assert status == 0 and (tmp_path / "out" / "summary.json").is_file()


def _assert_clean_failure(status: int, err: str, tmp_path: Path, *needles: str) -> None:
    assert status == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_missing_image(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    victim = sorted((small_rad / "images").iterdir())[0]
    victim.unlink()
    status, err = _run(capsys, _prepare(small_rad, tmp_path / "out"))
    _assert_clean_failure(status, err, tmp_path, "image file not found", victim.name)


def test_corrupt_jpeg(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    victim = sorted((small_rad / "images").iterdir())[-1]
    victim.write_bytes(victim.read_bytes()[:300])
    status, err = _run(capsys, _prepare(small_rad, tmp_path / "out"))
    _assert_clean_failure(status, err, tmp_path, "cannot decode image", victim.name)


def test_malformed_json(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = small_rad / "testset.json"
    path.write_text(path.read_text()[:-40])
    status, err = _run(capsys, _prepare(small_rad, tmp_path / "out"))
    _assert_clean_failure(status, err, tmp_path, "testset.json", "malformed JSON")


def test_missing_field(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = small_rad / "trainset.json"
    items = json.loads(path.read_text())
    del items[4]["answer"]
    path.write_text(json.dumps(items))
    status, err = _run(capsys, _prepare(small_rad, tmp_path / "out"))
    _assert_clean_failure(status, err, tmp_path, "trainset.json", "record 4", "'answer'")


def test_empty_split(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (small_rad / "testset.json").write_text("[]")
    status, err = _run(capsys, _prepare(small_rad, tmp_path / "out"))
    _assert_clean_failure(status, err, tmp_path, "testset.json", "split 'test' has no records")


def test_unknown_answer_type(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = small_rad / "trainset.json"
    items = json.loads(path.read_text())
    items[2]["answer_type"] = "MAYBE"
    path.write_text(json.dumps(items))
    status, err = _run(capsys, _prepare(small_rad, tmp_path / "out"))
    _assert_clean_failure(status, err, tmp_path, "trainset.json", "'MAYBE'")


def test_unknown_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, err = _run(capsys, ["prepare", "vqa-med", "--source", str(tmp_path), "--out", str(tmp_path / "out")])
    _assert_clean_failure(status, err, tmp_path, "unknown dataset 'vqa-med'", "vqa-rad", "slake", "synthetic")


def test_unwritable_output(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a directory should be")
    status, err = _run(capsys, _prepare(small_rad, blocker / "out"))
    assert status == 2 and len(err.splitlines()) == 1 and "not_a_dir" in err


def test_existing_output_kept_without_overwrite(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "prepared"
    assert main(_prepare(small_rad, out)) == 0
    before = (out / "summary.json").read_text()
    status, err = _run(capsys, _prepare(small_rad, out))
    assert status == 2 and "already exists" in err and (out / "summary.json").read_text() == before
    (small_rad / "testset.json").write_text("[]")
    status, err = _run(capsys, _prepare(small_rad, out) + ["--overwrite"])
    assert status == 2 and (out / "summary.json").read_text() == before  # a failed overwrite keeps the old run
    assert main(["prepare", "synthetic", "--out", str(out), "--overwrite", "--image-specs", "gray84",
                 "--synthetic-images", "20"]) == 0
    assert json.loads((out / "summary.json").read_text())["dataset"] == "synthetic"


def test_missing_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, err = _run(capsys, ["prepare", "slake", "--source", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    _assert_clean_failure(status, err, tmp_path, "nowhere")
