"""Atomic writes: the old file stays whole when writing the new one fails, and no temporary file is left."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from infra.files import replace_atomic, replace_folder_atomic, save_npz_atomic, torch_save_atomic, write_text_atomic


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_text_atomic(path, "old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomic(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_every_writer_creates_the_folder(tmp_path: Path) -> None:
    path = torch_save_atomic({"x": torch.ones(2)}, tmp_path / "checkpoints" / "last.pt")
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
    assert write_text_atomic(tmp_path / "a" / "b.txt", "é").read_text(encoding="utf-8") == "é"
    npz = save_npz_atomic(tmp_path / "cache" / "features.npz", keys=np.array(["x"]))
    assert np.load(npz)["keys"].tolist() == ["x"] and [p.name for p in npz.parent.iterdir()] == ["features.npz"]


def test_the_new_file_is_on_disk_before_it_replaces_the_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    events: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync"))
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append("replace"), real_replace(src, dst)))
    write_text_atomic(path, "new")
    assert events == ["fsync", "replace"] and path.read_text() == "new"


def test_a_folder_is_replaced_only_once_the_new_one_is_complete(tmp_path: Path) -> None:
    out = tmp_path / "export"
    replace_folder_atomic(out, lambda folder: (folder / "a.txt").write_text("old"))

    def fail(folder: Path) -> None:
        (folder / "a.txt").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        replace_folder_atomic(out, fail)
    assert (out / "a.txt").read_text() == "old"
    replace_folder_atomic(out, lambda folder: (folder / "b.txt").write_text("new"))
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging or retired folder left
