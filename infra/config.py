"""YAML config files validated into nested dataclasses, with ``section.key=value`` overrides.

Both command lines (``pubmedclip`` and ``medvqa``) read their configs through ``load_dataclass``: an
unknown key, a wrong type or a value outside its choices is a one-line ``UserError`` naming the file
and the dotted key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from infra.errors import UserError

T = TypeVar("T")


def read_yaml_mapping(path: str | Path, allow_empty: bool = True) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file is an empty mapping where ``allow_empty``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of sections at the top level, got {data!r}")
    return data


BASE_KEY = "base"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, ``null`` removes the base's key, any other
    value replaces it."""
    merged = dict(base)
    for key, value in over.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_mapping(path: str | Path) -> dict[str, Any]:
    """A config file's mapping laid over its ``base:`` file (a path relative to it), if it names one.

    One level only: a base file that names a base of its own is refused, so a variant config always
    shows everything it differs in, and its base everything else. A key the variant sets to ``null``
    is removed from the base (``model.encoders: {maml: null}`` when the variant uses no MAML).
    """
    path = Path(path)
    data = read_yaml_mapping(path)
    base_name = data.pop(BASE_KEY, None)
    if base_name is None:
        return data
    if not isinstance(base_name, str) or not base_name:
        raise UserError(f"{path}: {BASE_KEY} must be the path of a config file, got {base_name!r}")
    base_path = path.parent / base_name
    if not base_path.is_file():
        raise UserError(f"{path}: {BASE_KEY} file not found: {base_path}")
    base = read_yaml_mapping(base_path)
    if BASE_KEY in base:
        raise UserError(f"{base_path}: a base config cannot name a {BASE_KEY} of its own (one level of inclusion)")
    return _merge(base, data)


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in nested ``data``; the value is parsed as YAML (``0.1``, ``true``, ``[1, 2]``)."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"override {override!r}: expected key=value, e.g. train.epochs=2")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {override!r}: {part} is not a section")
    try:
        node[leaf] = yaml.safe_load(raw) if raw else None  # ``key=`` clears a key (``""`` for a plain str)
    except yaml.YAMLError:
        node[leaf] = raw


def build(kind: Any, value: Any, where: str, key: str = "", choices: Mapping[str, tuple] = {}) -> Any:
    """``value`` converted to ``kind`` (a dataclass, list, dict, union, optional or simple type).

    ``choices`` maps dotted keys to their allowed values. Conversions: int to float, numeric strings
    to float (YAML 1.1 reads ``1e-5`` as a string), ``None`` to ``""`` for a plain ``str``.
    """
    if kind is Any:  # checked later by whoever reads it (a registered head's or encoder's own settings)
        return value
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    name = key or "the top level"
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise UserError(f"{where}: {name} must be a mapping, got {value!r}")
        hints = typing.get_type_hints(kind)
        unknown = [k for k in value if k not in hints]
        if unknown:
            raise UserError(f"{where}: unknown key {key + '.' if key else ''}{unknown[0]} (known: {', '.join(hints)})")
        return kind(**{k: build(hints[k], v, where, f"{key}.{k}" if key else k, choices) for k, v in value.items()})
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return _check_choice(None, where, key, choices)
        alternatives = [a for a in args if a is not type(None)]
        if len(alternatives) == 1:
            return build(alternatives[0], value, where, key, choices)
        kinds = [typing.get_origin(a) or a for a in alternatives]  # ``bool | list[str]``: bool, list
        for alternative, kind_of in zip(alternatives, kinds):  # the value's own kind: its errors are the precise ones
            if isinstance(value, kind_of) and not (kind_of is int and isinstance(value, bool)):
                return build(alternative, value, where, key, choices)
        for alternative in alternatives:  # else the first that converts (an int for ``float | list[float]``)
            try:
                return build(alternative, value, where, key, choices)
            except UserError:
                pass
        raise UserError(f"{where}: {name} must be {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: {name} must be a list, got {value!r}")
        return [build(args[0], v, where, f"{key}[{i}]", choices) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: {name} must be a mapping, got {value!r}")
        return {str(k): build(args[1], v, where, f"{key}.{k}", choices) for k, v in value.items()}
    value = _convert(kind, value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"{where}: {name} must be {kind.__name__}, got {value!r}")
    return _check_choice(value, where, key, choices)


def _check_choice(value: Any, where: str, key: str, choices: Mapping[str, tuple]) -> Any:
    if key in choices and value not in choices[key]:
        allowed = ", ".join("null" if c is None else str(c) for c in choices[key])
        raise UserError(f"{where}: {key} must be one of {allowed}, got {'null' if value is None else repr(value)}")
    return value


def _convert(kind: Any, value: Any) -> Any:
    if kind is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            return value
    if kind is str and value is None:
        return ""
    return value


def load_dataclass(kind: type[T], path: str | Path | None, overrides: typing.Sequence[str] = (),
                   choices: Mapping[str, tuple] = {}) -> T:
    """Read a YAML config (``None``: the defaults of ``kind``), apply overrides, validate into ``kind``."""
    data = read_config_mapping(path) if path is not None else {}
    for override in overrides:
        apply_override(data, override)
    where = str(path) if path is not None else "config"
    return build(kind, data, f"{where} (with overrides)" if overrides else where, choices=choices)
