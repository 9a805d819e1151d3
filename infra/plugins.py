"""Plug-ins: Python modules a run imports before it builds anything, so that what they register (a VQA
head, a visual encoder, a dataset) can be named in its config like the built-in ones.

An entry is a module name importable from the Python path (``my_package.heads``) or the path of a
``.py`` file; a relative file path is taken from the folder of the config that names it.

An installed distribution needs no entry at all: it declares its plug-in under the entry-point group
``medvqa.plugins`` (``[project.entry-points."medvqa.plugins"] my_heads = "my_package.heads"`` in its
pyproject.toml), and the registries import it the first time they are asked for a name.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from infra.errors import UserError

ENTRY_POINT_GROUP = "medvqa.plugins"
_loaded_groups: set[str] = set()


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> None:
    """Import the plug-ins installed distributions declare under ``group``, once per process.

    An entry point names a module that registers what it defines when imported (``"my_package.heads"``)
    or a function called once to register (``"my_package:register"``). One that fails to load is a
    one-line error naming it and its distribution.
    """
    if group in _loaded_groups:
        return
    _loaded_groups.add(group)  # before loading: a plug-in's own registry lookups must not load it again
    seen = set()
    for entry_point in importlib.metadata.entry_points(group=group):
        if (entry_point.name, entry_point.value) in seen:  # one distribution found twice on the path
            continue
        seen.add((entry_point.name, entry_point.value))
        try:
            loaded = entry_point.load()
            if callable(loaded) and not isinstance(loaded, ModuleType):
                loaded()
        except Exception as error:
            distribution = entry_point.dist.name if entry_point.dist else "an installed distribution"
            raise UserError(f"plug-in {entry_point.name!r} = {entry_point.value!r} of {distribution} (entry point "
                            f"group {group}) failed to load: {type(error).__name__}: {error}") from None


def resolve_plugins(entries: Sequence[str], relative_to: Path | None = None) -> list[str]:
    """``entries`` with relative ``.py`` paths made absolute (from ``relative_to``), so a saved config
    names the same files from anywhere."""
    resolved = []
    for entry in entries:
        if entry.endswith(".py") and relative_to is not None and not Path(entry).is_absolute():
            entry = str((relative_to / entry).resolve())
        resolved.append(entry)
    return resolved


def import_plugins(entries: Sequence[str], where: str = "plugins") -> None:
    """Import each plug-in once (a file a second time is not re-run: its registrations would clash)."""
    for entry in entries:
        if entry.endswith(".py"):
            path = Path(entry)
            name = f"plugin_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"
            if name in sys.modules:
                continue
            if not path.is_file():
                raise UserError(f"{where}: plug-in file not found: {path}")
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        else:
            try:
                importlib.import_module(entry)
            except ModuleNotFoundError as error:
                raise UserError(f"{where}: plug-in module {entry!r} cannot be imported ({error})") from None
