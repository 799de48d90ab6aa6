"""TOML text: read with the standard library's ``tomllib`` (the ``tomli`` package, its
origin, on Python 3.10), written by the small writer below.

The writer covers what ivr writes (the resolved config, ``--set`` values): nested tables of
strings, integers, floats, booleans and lists of these. It refuses what TOML cannot hold
exactly (None, inf, nan, integers beyond 64 bits, lone surrogates) rather than write a file
that reads back different. Floats are written with ``repr``, the shortest text that parses
back to the same double, so ``loads(dumps(d)) == d``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError
loads = tomllib.loads

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}
_INT64 = range(-2**63, 2**63)


def _string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:  # TOML allows no raw control character but tab
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:  # from undecodable file names (surrogateescape)
            raise ValueError(f"{text!r} holds a lone surrogate, which TOML cannot hold")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings, got {type(key).__name__} {key!r}")
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def format_value(value: Any) -> str:
    """The TOML text of one value: str, int, float, bool or a list of them."""
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"{value} does not fit TOML's 64-bit integers")
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not written to TOML files (not finite)")
        return repr(value)  # shortest round-trip text; always has '.' or 'e'
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def _table(path: list[str], table: Mapping[str, Any], out: list[str]) -> None:
    values = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if path:
        out.append(("\n" if out else "") + "[" + ".".join(path) + "]")
    for key, value in values:
        try:
            out.append(f"{_key(key)} = {format_value(value)}")
        except (TypeError, ValueError) as e:
            raise type(e)(f"key '{'.'.join([*path, str(key)])}': {e}") from None
    for key, sub in tables:
        _table([*path, _key(key)], sub, out)


def dumps(doc: Mapping[str, Any]) -> str:
    """TOML text of a mapping; nested mappings become ``[section]`` tables."""
    out: list[str] = []
    _table([], doc, out)
    return "\n".join(out) + "\n"
