"""Plug-ins: Python modules a run imports before it builds anything, so that what they register (a VQA
head, a visual encoder, a dataset) can be named in its config like the built-in ones.

An entry is a module name importable from the Python path (``my_package.heads``) or the path of a
``.py`` file; a relative file path is taken from the folder of the config that names it.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.errors import UserError


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
