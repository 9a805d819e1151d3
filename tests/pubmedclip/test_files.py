"""Atomic writes: the old file stays whole when writing the new one fails, and no temporary file is left."""
from pathlib import Path

import pytest
import torch

from pubmedclip.files import replace_atomic, torch_save_atomic, write_text_atomic


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    write_text_atomic(path, "old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        replace_atomic(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_torch_save_atomic_creates_the_folder(tmp_path: Path) -> None:
    path = torch_save_atomic({"x": torch.ones(2)}, tmp_path / "checkpoints" / "last.pt")
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(2))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]
