"""The registry of VQA heads: ``@register_model(name)`` on a builder, ``create_model(name, **cfg)`` to build."""
from __future__ import annotations

from torch import nn

from infra.registry import Registry

MODELS: Registry[nn.Module] = Registry("model")
register_model = MODELS.register
list_models = MODELS.names


def create_model(name: str, **cfg) -> nn.Module:
    """Build a registered model; keyword arguments set to None keep the builder's defaults."""
    return MODELS.create(name, **{k: v for k, v in cfg.items() if v is not None})
