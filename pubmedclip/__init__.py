"""CLIP for radiology: load any CLIP checkpoint, fine-tune contrastively, evaluate, encode images.

The model-side names load on first use, so commands that need no model (``pubmedclip pmc-oa``) start
without importing torch and the CLIP libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from data_prep.input_spec import InputSpec
from infra.errors import UserError

if TYPE_CHECKING:
    from pubmedclip.checkpoints import export_pubmedclip, load_clip
    from pubmedclip.encoder import ImageEncoder
    from pubmedclip.models import LoadedClip, list_architectures

__version__ = "0.1.0"
_LAZY = {"ImageEncoder": "pubmedclip.encoder", "LoadedClip": "pubmedclip.models",
         "list_architectures": "pubmedclip.models", "export_pubmedclip": "pubmedclip.checkpoints",
         "load_clip": "pubmedclip.checkpoints"}
__all__ = ["ImageEncoder", "InputSpec", "LoadedClip", "UserError", "export_pubmedclip", "list_architectures",
           "load_clip"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pubmedclip' has no attribute {name!r}")
