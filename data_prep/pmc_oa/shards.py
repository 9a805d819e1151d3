"""WebDataset tar shards written reproducibly: fixed member order and metadata, so equal samples give
equal bytes, and published by rename, so a reader (or a crash) never sees a partial shard."""
from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

SHARD_NAME = re.compile(r"^\d{6}\.tar$")


def shard_name(index: int) -> str:
    return f"{index:06d}.tar"


def sample_key(pair_id: str) -> str:
    """A WebDataset key: no dots (they separate the key from the extension), no path separators."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", pair_id)


class ShardWriter:
    """Streams samples into ``.<name>.partial`` beside the shard; ``publish`` renames it into place."""

    def __init__(self, path: Path):
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.handle = self.partial.open("wb")
        self.tar = tarfile.open(fileobj=self.handle, mode="w", format=tarfile.PAX_FORMAT)
        self.count = 0

    def add(self, key: str, files: dict[str, bytes]) -> None:
        """One sample: ``files`` maps an extension (``jpg``, ``txt``, ``json``) to its bytes, written in that order."""
        for extension, data in files.items():
            info = tarfile.TarInfo(f"{key}.{extension}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self.tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def publish(self) -> Path:
        self.tar.close()
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.partial, self.path)
        return self.path

    def discard(self) -> None:
        self.tar.close()
        self.handle.close()
        self.partial.unlink(missing_ok=True)
