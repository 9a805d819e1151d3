"""The CLIP contrastive loss over the global batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pubmedclip.distributed import gather_rows


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy (0.5 image->text + 0.5 text->image) over the in-batch similarity matrix.

    ``scale`` is the temperature multiplier itself (``logit_scale.exp()``, as open_clip's forward returns it).

    Features are gathered from every process first, so each process computes the loss of the whole global
    batch; with DDP's gradient averaging the parameter gradients equal those of one process on that batch.
    """
    images = gather_rows(F.normalize(image_features.float(), dim=-1))  # [N, D]
    texts = gather_rows(F.normalize(text_features.float(), dim=-1))  # [N, D]
    logits = scale.float() * images @ texts.T  # [N, N]
    labels = torch.arange(logits.shape[0], device=logits.device)  # [N]
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
