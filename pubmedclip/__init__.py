"""CLIP for radiology: load any CLIP checkpoint, fine-tune contrastively, evaluate, encode images."""

__version__ = "0.1.0"
