"""Inputs as common editors write them: UTF-8 with a byte-order mark, UTF-16, Windows line ends."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.errors import UserError
from infra.files import read_text
from medvqa.cli import main
from medvqa.data import PreparedDataset

TEXT = '{"question": "Is there a mass in the left lung?",\n "answer": "ja, größer"}\n'


@pytest.mark.parametrize("encoding, line_end", [("utf-8", "\n"), ("utf-8-sig", "\r\n"), ("utf-16", "\n"),
                                                ("utf-16", "\r\n"), ("utf-16-be", "\n")])
def test_read_text(tmp_path: Path, encoding: str, line_end: str) -> None:
    path = tmp_path / "file.json"
    data = TEXT.replace("\n", line_end).encode(encoding)
    path.write_bytes(b"\xfe\xff" + data if encoding == "utf-16-be" else data)  # a big-endian byte-order mark
    assert read_text(path) == TEXT


def test_undecodable_bytes_name_the_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('["größer"]'.encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.json: not UTF-8 text: undecodable byte at offset 4 "):
        read_text(path)
    path.write_bytes(b"\xef\xbb\xbf[\xff]")
    with pytest.raises(UserError, match="undecodable byte at offset 4 "):
        read_text(path)
    with pytest.raises(UserError, match="file not found: .*absent.json"):
        read_text(tmp_path / "absent.json")


def _prepare(source: Path, out: Path) -> PreparedDataset:
    assert main(["prepare", "vqa-rad", "--source", str(source), "--out", str(out), "--image-specs", "gray84"]) == 0
    return PreparedDataset(out)


def _same_prepared(a: PreparedDataset, b: PreparedDataset) -> None:
    for name in ("records.jsonl", "dictionary.json", "answers.json", "splits.json", "images/manifest.json",
                 "images/gray84.npy"):
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes(), name
    assert a.digest("embeddings") == b.digest("embeddings")
    assert {k: v for k, v in a.summary.items() if k not in ("source", "seconds")} == \
        {k: v for k, v in b.summary.items() if k not in ("source", "seconds")}


@pytest.mark.parametrize("encoding, line_end", [("utf-8-sig", "\r\n"), ("utf-16", "\n")])
def test_vqa_rad_copy_in_another_encoding_prepares_identically(small_rad: Path, tmp_path: Path, encoding: str,
                                                               line_end: str) -> None:
    reference = _prepare(small_rad, tmp_path / "reference")
    for name in ("trainset.json", "testset.json"):
        items = json.loads((small_rad / name).read_text())
        text = json.dumps(items, indent=1, ensure_ascii=False).replace("\n", line_end)
        (small_rad / name).write_bytes(text.encode(encoding))
    assert (small_rad / "trainset.json").read_bytes()[:2] in (b"\xef\xbb", b"\xff\xfe")
    _same_prepared(reference, _prepare(small_rad, tmp_path / "edited"))


def test_malformed_json_in_utf16_names_the_line(small_rad: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (small_rad / "testset.json").write_bytes('[\r\n {"qid": 1,}\r\n]'.encode("utf-16"))
    assert main(["prepare", "vqa-rad", "--source", str(small_rad), "--out", str(tmp_path / "out")]) == 2
    assert "testset.json: malformed JSON at line 2 column 12" in capsys.readouterr().err
