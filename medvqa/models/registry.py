"""The registry of VQA heads: ``@register_head(name, settings=Dataclass)`` on a builder.

A builder takes the head's settings (``model.head`` of a run config, validated into its dataclass)
and what the data decides, ``ntoken``, ``answer_sizes`` and the ``visual`` front end, and returns a
``VQAHead``. ``create_head(name, {...}, ...)`` builds one.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infra.registry import Registry

if TYPE_CHECKING:
    from medvqa.models.head import VQAHead

HEADS: Registry[VQAHead] = Registry("VQA head")
register_head = HEADS.register
list_heads = HEADS.names


def create_head(name: str, settings: dict[str, Any] | Any | None = None, where: str = "config",
                **context: Any) -> VQAHead:
    """Build the head ``name`` (settings: a mapping or its settings dataclass; context: ntoken, answer_sizes,
    visual)."""
    return HEADS.create(name, settings, where, "model.head", **context)
