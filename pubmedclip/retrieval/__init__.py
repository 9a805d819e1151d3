"""Retrieval with any CLIP: an embedding index of captions or images, captioning by retrieval, text->image and
image->image search, and the captioning evaluation with baselines and bootstrap intervals."""

from pubmedclip.retrieval.bank import Caption, read_captions
from pubmedclip.retrieval.index import EmbeddingIndex, build_caption_index, build_image_index, model_identity
from pubmedclip.retrieval.search import Hit, caption_images, search_images, search_text

__all__ = [
    "Caption",
    "EmbeddingIndex",
    "Hit",
    "build_caption_index",
    "build_image_index",
    "caption_images",
    "model_identity",
    "read_captions",
    "search_images",
    "search_text",
]
