"""Named builders, each with the dataclass of its own settings.

``@REGISTRY.register(name, settings=SomeConfig)`` on a builder ``fn(settings, **context)``;
``REGISTRY.create(name, {...}, where=...)`` validates the mapping against ``SomeConfig`` (an unknown key
or a wrong type is a one-line ``UserError`` naming the entry and its valid keys) and builds. One
``Registry`` per kind of thing a config names: VQA heads, visual encoders, datasets.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from infra.config import build
from infra.errors import UserError
from infra.plugins import load_entry_points

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    builder: Callable[..., T]
    settings: type  # a dataclass whose fields all have defaults


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind  # "VQA head", "visual encoder", "dataset": names the registry in errors
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, settings: type) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: make ``builder(settings_instance, **context)`` buildable by ``name``."""
        if not dataclasses.is_dataclass(settings):
            raise TypeError(f"{self.kind} {name!r}: settings must be a dataclass, got {settings!r}")

        def add(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(builder, settings)
            return builder

        return add

    def names(self) -> list[str]:
        load_entry_points()  # installed plug-ins register before the first lookup
        return sorted(self._entries)

    def entry(self, name: str) -> Entry[T]:
        load_entry_points()
        if name not in self._entries:
            raise UserError(f"unknown {self.kind} {name!r}: choose from: {', '.join(self.names())}")
        return self._entries[name]

    def settings(self, name: str, values: Mapping[str, Any] | None = None, where: str = "config",
                 key: str = "") -> Any:
        """``values`` validated into ``name``'s settings dataclass (missing keys take its defaults)."""
        settings = self.entry(name).settings
        values = dict(values or {})
        valid = list(typing.get_type_hints(settings))
        unknown = [k for k in values if k not in valid]
        if unknown:
            raise UserError(f"{where}: {key + '.' if key else ''}{unknown[0]} is not a setting of {self.kind} "
                            f"{name!r} (valid: {', '.join(valid)})")
        return build(settings, values, where, key)

    def create(self, name: str, values: Mapping[str, Any] | Any | None = None, where: str = "config",
               key: str = "", **context: Any) -> T:
        """Build ``name`` from its settings (a mapping, or an instance of its settings dataclass)."""
        entry = self.entry(name)
        settings = values if isinstance(values, entry.settings) else self.settings(name, values, where, key)
        return entry.builder(settings, **context)


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as a plain mapping (for config files and checkpoints)."""
    return dataclasses.asdict(settings)
