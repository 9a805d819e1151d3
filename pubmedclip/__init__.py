"""CLIP for radiology: load any CLIP checkpoint, fine-tune contrastively, evaluate, encode images.

The names below are imported on first use, so ``import pubmedclip.files`` (which the VQA side uses)
does not load open_clip.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_EXPORTS = {
    "ImageEncoder": "pubmedclip.encoder",
    "InputSpec": "pubmedclip.encoder",
    "LoadedClip": "pubmedclip.models",
    "UserError": "pubmedclip.errors",
    "export_pubmedclip": "pubmedclip.checkpoints",
    "list_architectures": "pubmedclip.models",
    "load_clip": "pubmedclip.checkpoints",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pubmedclip' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
