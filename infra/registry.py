"""Named builders: ``@REGISTRY.register(name)`` on a builder, ``REGISTRY.create(name, **cfg)`` to build.

One ``Registry`` per kind of thing a config names: VQA heads, visual encoders, datasets.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

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
