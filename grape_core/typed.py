"""One typed decoder for every saved or configured object: plain values (JSON, keyword
arguments) checked against a frozen dataclass's type hints, field by field.

Every config (:class:`~grape_core.config.Config`: the model, training, features, graphs,
a planted screen) and every section of a model's manifest
(:class:`~grape_core.bundle.schema.Manifest`) is decoded here: a list becomes the tuple the
field holds, an integer the float it holds, a nested object its dataclass, and a value of
the wrong type is one error line that names the key (``training.members[0].seed``), what it
must be and what it is. Ranges and relations between fields are the classes' own checks.

Supported hints: ``Any``, ``bool``, ``int``, ``float``, ``str``, ``None``, ``Literal[...]``,
unions (``X | None``), ``tuple[X, ...]`` and ``tuple[X, Y]``, ``dict`` / ``dict[str, X]`` and
dataclasses.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal, Union

import numpy as np

Failure = Callable[[str, Any, Any], Exception]
"""``fail(key, value, hint) -> the exception to raise``: the caller's one-line message for a
value of the wrong type (:func:`type_name` says what the hint wants)."""

WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def type_name(tp: Any, words: Mapping[Any, str] = WORDS) -> str:
    """What a type hint wants, in words (``a list of a string``, ``an integer or null``).

    Parameters
    ----------
    tp
        A type hint.
    words
        The words of the plain types (``int``: ``an integer``, or ``a whole number``).

    Returns
    -------
    str
    """
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if not (a is int and float in typing.get_args(tp))]
        return " or ".join(type_name(a, words) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
            return f"a list of {type_name(args[0], words)}"
        return f"a list of {len(args)} values ({', '.join(type_name(a, words) for a in args)})"
    if origin is dict or tp is dict or dataclasses.is_dataclass(tp):
        return "an object"
    return words.get(tp, str(tp))


def shown(value: Any, limit: int = 40) -> str:
    """A value as JSON, cut to ``limit`` characters (for messages)."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@functools.lru_cache(maxsize=None)
def hints(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass (cached per class)."""
    return typing.get_type_hints(cls)


def value(data: Any, tp: Any, key: str, fail: Failure,
          missing: Callable[[str], Exception] | None = None) -> Any:
    """``data`` as the hint ``tp``, or ``fail(key, data, tp)`` raised.

    Parameters
    ----------
    data
        A plain value (from JSON or a keyword argument).
    tp
        The field's type hint.
    key
        Where the value is, for the message (``training.members[0].seed``).
    fail
        Builds the error (:data:`Failure`).
    missing
        Builds the error for a required field missing in a nested object (default:
        ``fail`` with ``dataclasses.MISSING``).

    Returns
    -------
    The value converted: a tuple for a list, a float for an integer where a float is
    wanted, a dataclass for an object.
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # X | None: X's own message names the key inside it
            return value(data, others[0], key, fail, missing)
        for arg in others:
            try:
                return value(data, arg, key, fail, missing)
            except Exception:  # noqa: BLE001 - the next member of the union may fit
                pass
    elif origin is Literal:
        if any(data == a and type(data) is type(a) for a in typing.get_args(tp)):
            return data
    elif tp is bool:
        if isinstance(data, (bool, np.bool_)):
            return bool(data)
    elif tp is int:
        if isinstance(data, (int, np.integer)) and not isinstance(data, (bool, np.bool_)):
            return int(data)
    elif tp is float:
        if isinstance(data, (int, float, np.integer, np.floating)) and not isinstance(
                data, (bool, np.bool_)):
            return float(data)
    elif tp is str:
        if isinstance(data, str):
            return data
    elif origin is tuple:
        if isinstance(data, (list, tuple)):
            args = typing.get_args(tp)
            if len(args) == 2 and args[1] is Ellipsis or len(args) == 1:
                return tuple(value(v, args[0], f"{key}[{i}]", fail, missing)
                             for i, v in enumerate(data))
            if len(data) == len(args):
                return tuple(value(v, a, f"{key}[{i}]", fail, missing)
                             for i, (v, a) in enumerate(zip(data, args)))
    elif origin is dict or tp is dict:
        if isinstance(data, dict):
            args = typing.get_args(tp)
            if not args or args[1] is Any:
                return dict(data)
            return {k: value(v, args[1], f"{key}.{k}", fail, missing) for k, v in data.items()}
    elif dataclasses.is_dataclass(tp):
        if isinstance(data, tp):
            return data
        if isinstance(data, dict):
            return decode(tp, data, where=key, fail=fail, missing=missing or _missing(fail))
    raise fail(key, data, tp)


def _missing(fail: Failure) -> Callable[[str], Exception]:
    return lambda key: fail(key, dataclasses.MISSING, None)


def decode(cls: type, data: Mapping[str, Any], *, where: str = "", fail: Failure,
           missing: Callable[[str], Exception],
           unknown: Callable[[list[str]], Exception] | None = None) -> Any:
    """A dataclass ``cls`` from the object ``data``, every field checked by :func:`value`.

    Parameters
    ----------
    cls
        A dataclass. A field named ``extra`` (a dict) receives the keys ``cls`` does not
        know, which are then kept (a manifest written by a newer version).
    data
        The object (``{field: value}``).
    where
        The key of ``data`` itself in a larger object (``training``), for messages.
    fail
        Builds the error for a value of the wrong type (:data:`Failure`).
    missing
        Builds the error for a required field that ``data`` lacks (its key).
    unknown
        Builds the error for keys ``cls`` does not know (sorted); ``None``: they go to
        ``extra`` (or are an error if ``cls`` has no such field).

    Returns
    -------
    An instance of ``cls``.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    keeps_extra = "extra" in fields
    strange = sorted(k for k in data if k not in fields or k == "extra")
    if strange and (unknown is not None or not keeps_extra):
        if unknown is None:
            raise fail(f"{where}.{strange[0]}" if where else strange[0], data[strange[0]], None)
        raise unknown(strange)
    found = hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name == "extra":
            continue
        key = f"{where}.{name}" if where else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise missing(key)
            continue
        kwargs[name] = value(data[name], found[name], key, fail, missing)
    if keeps_extra:
        kwargs["extra"] = {k: v for k, v in data.items() if k in strange}  # in their order
    return cls(**kwargs)


def check_fields(obj: Any, fail: Failure) -> None:
    """Decode every field of the frozen dataclass ``obj`` in place (a list becomes the tuple
    the field holds, an integer the float): what ``cls(**kwargs)`` was given is checked
    like what :func:`decode` reads.

    Parameters
    ----------
    obj
        A dataclass instance (frozen or not).
    fail
        Builds the error for a value of the wrong type (:data:`Failure`).
    """
    found = hints(type(obj))
    for f in dataclasses.fields(obj):
        current = getattr(obj, f.name)
        checked = value(current, found[f.name], f.name, fail)
        if checked is not current:
            object.__setattr__(obj, f.name, checked)
