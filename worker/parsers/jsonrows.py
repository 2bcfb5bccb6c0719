"""JSON values -> the texts of a record's fields: strings as they are, numbers as written,
true/false, null as blank, objects and arrays as compact JSON; records -> rows by the
dotted paths of `mapping.fields`."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

RAW_CHARS = 200  # of a rejected record's text

Row = Callable[[Any], list[str]]


def decimal_text(d: Decimal) -> str:
    """A JSON number as written, without exponent noise (1E+2 -> 100); absurd exponents
    stay in E notation rather than become thousands of zeros."""
    text = str(d)
    if "E" not in text:
        return text
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and -40 <= exponent <= 40:
        return format(d, "f")
    return text


def _fragment(v: Any) -> orjson.Fragment:
    if isinstance(v, Decimal):
        return orjson.Fragment(decimal_text(v))
    raise TypeError(f"{type(v).__name__} is not JSON")


def _dumps(v: Any) -> str:
    return orjson.dumps(v, default=_fragment).decode()


# A value's text by its type (ijson gives str, int, Decimal, bool, None, dict, list):
# strings as they are, numbers as written, true/false, null as blank, objects and arrays
# as compact JSON. Looked up by class, so the common types cost no Python-level call.
TO_TEXT: dict[type, Callable[[Any], str]] = {
    str: str, int: int.__repr__, Decimal: decimal_text, type(None): "".format,
    bool: {True: "true", False: "false"}.__getitem__, dict: _dumps, list: _dumps,
}


def value_text(v: Any) -> str:
    return TO_TEXT.get(v.__class__, _dumps)(v)


def kind(v: Any) -> str:
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, bool):
        return "a boolean"
    if v is None:
        return "null"
    return "a number"


def raw(v: Any) -> str:
    try:
        text = orjson.dumps(v, default=_fragment).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = repr(v)
    return text if len(text) <= RAW_CHARS else text[:RAW_CHARS - 3] + "..."


def _dig(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if value.__class__ is dict:
            value = value.get(key)
        elif value.__class__ is list and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def row_maker(paths: list[tuple[str, ...]]) -> Row:
    """record -> its texts, one a path: the first steps in one C-level pass of dict.get,
    the deeper steps (few) after."""
    keys = [p[0] for p in paths]
    deeper = [(i, p[1:]) for i, p in enumerate(paths) if len(p) > 1]
    convert = TO_TEXT

    if not deeper:
        def flat(record: Any) -> list[str]:
            return [v if v.__class__ is str else convert[v.__class__](v)
                    for v in map(record.get, keys)]

        return flat

    def nested(record: Any) -> list[str]:
        values = list(map(record.get, keys))
        for i, rest in deeper:
            value = values[i]
            if value.__class__ is dict and len(rest) == 1:
                values[i] = value.get(rest[0])
            else:
                values[i] = _dig(value, rest)
        return [v if v.__class__ is str else convert[v.__class__](v) for v in values]

    return nested
