"""Named builders: ``@REGISTRY.register(name)`` on a builder, ``REGISTRY.create(name, **cfg)`` to build.

One ``Registry`` holds the VQA heads (``register_model`` / ``create_model``), another the visual
encoders (``register_encoder`` / ``create_encoder`` in ``medvqa.models.visual``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from torch import nn

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind  # "model", "visual encoder": names the registry in errors
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: make ``builder(**cfg)`` buildable as ``create(name, **cfg)``."""

        def add(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._builders[name] = builder
            return builder

        return add

    def names(self) -> list[str]:
        return sorted(self._builders)

    def create(self, name: str, **cfg) -> T:
        if name not in self._builders:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._builders[name](**cfg)


MODELS: Registry[nn.Module] = Registry("model")
register_model = MODELS.register
list_models = MODELS.names


def create_model(name: str, **cfg) -> nn.Module:
    """Build a registered model; keyword arguments set to None keep the builder's defaults."""
    return MODELS.create(name, **{k: v for k, v in cfg.items() if v is not None})
