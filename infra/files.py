"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def replace_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temporary sibling of ``path``, then rename it over ``path`` (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with tmp.open("r+b") as handle:  # on disk before the rename, so a power cut leaves the old or the new
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return replace_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_npz_atomic(path: str | Path, **arrays: Any) -> Path:
    """``np.savez`` to ``path`` atomically (through a file object: given a path, numpy would add ".npz")."""
    import numpy as np

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.savez(handle, **arrays)

    return replace_atomic(path, write)


def torch_save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically."""
    import torch  # imported here so the text writers stay cheap to import

    return replace_atomic(path, lambda tmp: torch.save(obj, tmp))
