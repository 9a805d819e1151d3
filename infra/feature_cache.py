"""Vectors computed once and kept on disk, keyed by (identity, item key); sha256 throughout.

An identity is ``<name>-<16 hex digits>``: the sha256 of a name and a JSON description of everything the
vectors depend on besides the item (``encoder_description``: input spec, weights digest, architecture; plus
whatever a caller adds, such as the digest of the images an item key points into). One folder per identity:

    <root>/<identity>/vectors.npz   keys [N] (str), vectors [N, D] float32
    <root>/<identity>/meta.json     the name and the description the identity hashes

Both files are replaced atomically, so a reader sees the old table or the new one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from infra.files import save_npz_atomic, write_text_atomic


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensors_digest(tensors: Mapping[str, Any]) -> str:
    """sha256 of named torch tensors (a state dict): names, dtypes, shapes and bytes, in name order."""
    import torch  # imported here so the cache itself needs only numpy

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def encoder_description(input_spec: Any, tensors: Mapping[str, Any], **more: Any) -> dict[str, Any]:
    """What an encoder's outputs depend on, as JSON: its input spec (a dataclass), the digest of its weights
    and ``more`` (such as an architecture config the weights do not imply)."""
    return {"input_spec": dataclasses.asdict(input_spec), "weights": tensors_digest(tensors), **more}


def encoder_identity(name: str, description: Mapping[str, Any]) -> str:
    """``<name>-<sha256 of name and description, 16 hex digits>``."""
    text = json.dumps({"name": name, **description}, sort_keys=True)
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


class FeatureCache:
    """A folder of vector tables, one per identity; items missing from a table are computed once and added."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def vectors(self, name: str, description: Mapping[str, Any], keys: Sequence[str],
                compute: Callable[[list[str]], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The ``[D]`` vector of each key under ``encoder_identity(name, description)``.

        ``compute(missing)`` gets the keys not stored yet (each once, in order) and returns the vectors of
        those it could compute; keys it leaves out (an unreadable image) are absent from the result.
        """
        folder = self.root / encoder_identity(name, description)
        table = self._load(folder)
        missing = [key for key in dict.fromkeys(keys) if key not in table]
        if missing:
            computed = compute(missing)
            if computed:
                table.update(computed)
                self._save(folder, {"name": name, **description}, table)
        return {key: table[key] for key in keys if key in table}

    @staticmethod
    def _load(folder: Path) -> dict[str, np.ndarray]:
        if not (folder / "vectors.npz").is_file():
            return {}
        with np.load(folder / "vectors.npz") as stored:
            return dict(zip(stored["keys"].tolist(), stored["vectors"]))

    @staticmethod
    def _save(folder: Path, meta: dict[str, Any], table: dict[str, np.ndarray]) -> None:
        write_text_atomic(folder / "meta.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
        save_npz_atomic(folder / "vectors.npz", keys=np.array(list(table)),
                        vectors=np.stack(list(table.values())).astype(np.float32))
