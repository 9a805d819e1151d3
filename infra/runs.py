"""The rules both trainers apply when asked to continue the run saved in a run directory.

A run continues when its config is the saved one up to runtime settings (where the data lives, the
device, threads, batch size of evaluation, ...: how fast and where a run goes, not what it learns)
and the number of epochs, which may grow where the schedule does not depend on the total. Anything
else is a different run, refused with the first setting that differs.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from infra.errors import UserError

EPOCHS = ("train", "epochs")


def first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    """``key.path: old vs new`` for the first differing entry of two nested mappings; None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key) != b.get(key):
                return first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
        return None
    return None if a == b else f"{prefix.rstrip('.')}: {a!r} vs {b!r}"


def without(config: Mapping[str, Any], keys: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``config`` less ``keys`` (section -> names)."""
    return {section: {k: v for k, v in values.items() if k not in keys.get(section, ())}
            if isinstance(values, dict) else values for section, values in config.items()}


def check_continuation(where: str, saved: Mapping[str, Any], new: Mapping[str, Any],
                       runtime: Mapping[str, Sequence[str]], extension_refused: str | None = None) -> None:
    """Refuse ``new`` as the continuation of the run saved with ``saved`` (both plain mappings).

    ``runtime`` settings may differ. ``train.epochs`` may grow unless ``extension_refused`` gives the
    reason it may not (a schedule that depends on the total); it may not shrink below the saved value.
    """
    section, key = EPOCHS
    ignored = {**runtime, section: (*runtime.get(section, ()), key)}
    difference = first_difference(without(saved, ignored), without(new, ignored))
    if difference is not None:
        raise UserError(f"{where} holds a run of a different config ({difference}); "
                        "choose another --out or pass --overwrite")
    before, after = saved.get(section, {}).get(key), new.get(section, {}).get(key)
    if before is not None and after is not None and after > before and extension_refused:
        raise UserError(f"{where} was planned for {before} epochs and cannot be extended to {after}: "
                        f"{extension_refused}; choose another --out or pass --overwrite")
