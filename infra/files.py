"""Text files as common editors write them, and atomic writes: a reader (or a crash) sees the old
file or the new one, never half of one."""
from __future__ import annotations

import codecs
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from infra.errors import UserError

# byte-order mark -> the codec of the bytes after it
BYTE_ORDER_MARKS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def read_text(path: str | Path) -> str:
    """A text file: UTF-8 with or without a byte-order mark, or UTF-16 with one; Windows line ends
    (CRLF) become LF. Missing files and undecodable bytes are a one-line ``UserError`` naming the file
    (and the byte offset)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    mark, encoding = next(((m, e) for m, e in BYTE_ORDER_MARKS if data.startswith(m)), (b"", "utf-8"))
    try:
        text = data[len(mark):].decode(encoding)
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not {encoding.upper()} text: undecodable byte at offset "
                        f"{len(mark) + error.start} (save it as UTF-8)") from None
    return text.replace("\r\n", "\n")


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


def replace_folder_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Let ``write`` fill a temporary sibling folder of ``path``, then move it into place; an existing folder is
    replaced only after the new one is complete, so an interrupted write leaves the old one whole."""
    path = Path(path)
    staging, retired = (path.with_name(f".{path.name}.{kind}{os.getpid()}") for kind in ("partial", "retired"))
    staging.mkdir(parents=True)
    try:
        write(staging)
        if path.exists():
            os.replace(path, retired)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
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


def link_atomic(source: str | Path, path: str | Path) -> Path:
    """Make ``path`` name the file ``source`` atomically: a hard link, or a copy where links are not possible."""
    import shutil

    source, path = Path(source), Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(source, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def file_lock(path: str | Path, *, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created) for the duration, across processes; with ``wait=False``,
    ``BlockingIOError`` when another process holds it. Advisory (flock): shared folders need a file system
    that supports it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
