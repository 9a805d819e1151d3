"""CLIP for radiology: load any CLIP checkpoint, fine-tune contrastively, evaluate, encode images."""

from __future__ import annotations

from data_prep.input_spec import InputSpec
from infra.errors import UserError
from pubmedclip.checkpoints import export_pubmedclip, load_clip
from pubmedclip.encoder import ImageEncoder
from pubmedclip.models import LoadedClip, list_architectures

__version__ = "0.1.0"
__all__ = ["ImageEncoder", "InputSpec", "LoadedClip", "UserError", "export_pubmedclip", "list_architectures",
           "load_clip"]
