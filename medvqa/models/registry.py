"""Model registry and factory: ``@register_model(name)`` on a builder, ``create_model(name, **cfg)`` to build."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = builder
        return builder

    return add


def list_models() -> list[str]:
    return sorted(MODELS)


def create_model(name: str, **cfg) -> nn.Module:
    """Build a registered model; keyword arguments set to None keep the builder's defaults."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return MODELS[name](**{k: v for k, v in cfg.items() if v is not None})
