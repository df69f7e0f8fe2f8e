"""Strict parsing of TOML tables into frozen dataclasses.

Every message names the key (as a dotted path), the value found and what was expected, so a
typo in a profile or config file is found from the message alone. Used for hardware
profiles here and for the terminal's config.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from hal.errors import ProfileError

T = TypeVar("T")


def choices(*allowed: str, default: str) -> Any:
    """A string field restricted to ``allowed``."""
    return dataclasses.field(default=default, metadata={"choices": allowed})


def bounded(default: float | int, low: float | int, high: float | int) -> Any:
    """A number field restricted to ``low <= value <= high``."""
    return dataclasses.field(default=default, metadata={"range": (low, high)})


def parse(cls: type[T], data: Any, path: str, error: type[Exception] = ProfileError) -> T:
    """Build dataclass ``cls`` from a TOML table, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise error(f"{path} must be a table, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise error(f"{_join(path, unknown[0])}: unknown key (allowed: {allowed})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise error(f"{key} is required")
            continue
        value = _convert(hints[name], data[name], key, error)
        _check_metadata(field, value, key, error)
        values[name] = value
    try:
        return cls(**values)
    except ValueError as exc:  # cross-field checks in __post_init__
        raise error(f"{path}: {exc}") from None


def _convert(hint: Any, value: Any, key: str, error: type[Exception]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        problems = {}
        for option in args:
            try:
                return _convert(option, value, key, error)
            except error as exc:
                problems[option] = exc
        # A table meant for one of several table types: that type's own complaint (a
        # missing or unknown key) says more than "must be a table".
        tables = [a for a in args if dataclasses.is_dataclass(a)]
        if isinstance(value, dict) and tables:
            def overlap(option):
                return len(set(value) & {f.name for f in dataclasses.fields(option)})
            raise problems[max(tables, key=overlap)]
        names = " or ".join(_type_name(a) for a in args)
        raise error(f"{key} must be {names}, got {_show(value)}")
    if hint is type(None):
        if value is None:
            return None
        raise error(f"{key} must be empty, got {_show(value)}")
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, key, error)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise error(f"{key} must be a list, got {_show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]", error) for i, v in enumerate(value))
        if len(value) != len(args):
            raise error(f"{key} must have {len(args)} items, got {_show(value)}")
        return tuple(_convert(a, v, f"{key}[{i}]", error) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{key} must be a table, got {_show(value)}")
        return types.MappingProxyType(
            {k: _convert(args[1], v, _join(key, k), error) for k, v in value.items()})
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint in (str, bool):
        if isinstance(value, hint):
            return value
    else:
        raise TypeError(f"schema: unsupported field type {hint!r} at {key}")
    raise error(f"{key} must be {_type_name(hint)}, got {_show(value)}")


def _check_metadata(field: dataclasses.Field, value: Any, key: str, error: type[Exception]) -> None:
    allowed = field.metadata.get("choices")
    if allowed is not None and value not in allowed:
        raise error(f"{key} must be one of {', '.join(map(repr, allowed))}, got {_show(value)}")
    limits = field.metadata.get("range")
    if limits is not None and not limits[0] <= value <= limits[1]:
        raise error(f"{key} must be between {limits[0]} and {limits[1]}, got {_show(value)}")


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "empty"
    if dataclasses.is_dataclass(hint):
        return "a table"
    origin = typing.get_origin(hint)
    if origin is tuple:
        return "a list"
    if origin is dict:
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
