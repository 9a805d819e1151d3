"""``pubmedclip index | caption | search`` and ``evaluate --task captioning`` end to end on real ROCO images, and
their one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pubmedclip.cli import main
from pubmedclip.retrieval import scoring


def test_index_caption_and_search(checkpoint: Path, other_checkpoint: Path, roco: Path, roco_image_dir: Path,
                                  tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", "--checkpoint", str(checkpoint), "--captions", str(roco), "--out", str(tmp_path / "cap")]) == 0
    assert "16 captions x 64" in capsys.readouterr().out
    assert main(["caption", "--index", str(tmp_path / "cap"), "--images", str(roco_image_dir), "-k", "3",
                 "--out", str(tmp_path / "captions.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "captions.csv").open(encoding="utf-8")))
    assert len(rows) == 8 * 3 and [r["rank"] for r in rows[:3]] == ["1", "2", "3"]

    assert main(["index", "--checkpoint", str(checkpoint), "--images", str(roco_image_dir), "--out",
                 str(tmp_path / "img")]) == 0
    capsys.readouterr()
    assert main(["search", "--index", str(tmp_path / "img"), "--text", "axial ct of the chest", "-k", "4"]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["query"] == "axial ct of the chest" and len(result["results"]) == 4
    query = sorted(roco_image_dir.iterdir())[2]
    assert main(["search", "--index", str(tmp_path / "img"), "--image", str(query), "-k", "2"]) == 0
    (result,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert result["results"][0]["id"] == query.name and result["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)

    # the index refuses another checkpoint, a missing image, and the wrong kind of index
    assert main(["caption", "--index", str(tmp_path / "cap"), "--images", str(query),
                 "--checkpoint", str(other_checkpoint)]) == 2
    assert "built with another model" in capsys.readouterr().err
    assert main(["caption", "--index", str(tmp_path / "cap"), "--images", str(tmp_path / "nope.jpg")]) == 2
    assert capsys.readouterr().err.strip() == f"error: image or image directory not found: {tmp_path / 'nope.jpg'}"
    assert main(["search", "--index", str(tmp_path / "cap"), "--text", "x"]) == 2
    assert "needs an index of images" in capsys.readouterr().err


def test_index_errors(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["index", "--checkpoint", str(checkpoint), "--captions", str(tmp_path / "empty.jsonl"),
                 "--out", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "empty.jsonl: no captions" in err
    assert main(["index", "--arch", "tiny-vit", "--captions", "x.csv", "--out", str(tmp_path / "i")]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err


def test_evaluate_captioning_writes_report_and_per_image_lines(checkpoint: Path, roco: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scoring, "java_available", lambda: False)  # the Java-free scorer keeps this test fast
    out = tmp_path / "captioning.json"
    assert main(["evaluate", "--task", "captioning", "--checkpoint", str(checkpoint), "--data", str(roco),
                 "--protocol", "medclip", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["protocol"] == "medclip" and report["scorer"] == scoring.JAVA_FREE
    assert report["per_image"] == str(tmp_path / "captioning.jsonl")
    line = json.loads((tmp_path / "captioning.jsonl").read_text().splitlines()[0])
    assert set(line) == {"image_id", "reference", "retrieved"} and set(line["retrieved"][0]) == {"id", "caption",
                                                                                                   "score", "rank"}
