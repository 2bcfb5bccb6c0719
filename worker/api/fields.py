"""Checks of request fields: each returns the value to store or raises a 422 naming the
field by its JSON pointer."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from worker import values
from worker.api.errors import invalid, pointer

MAX_TEXT = 1000


def text(name: str, v: Any, *, nullable: bool = False, max_chars: int = MAX_TEXT) -> str | None:
    if v is None and nullable:
        return None
    if not isinstance(v, str):
        raise invalid(pointer(name), "must be a string" + (" or null" if nullable else ""))
    v = v.strip()
    if not v and not nullable:
        raise invalid(pointer(name), "must not be blank")
    if len(v) > max_chars:
        raise invalid(pointer(name), f"is longer than {max_chars} characters")
    try:
        values.check_controls(name, v)  # the rule feed values meet
    except ValueError as exc:
        raise invalid(pointer(name), str(exc).removeprefix(f"{name}: ")) from None
    return v or None


def required_text(name: str, v: Any, max_chars: int = MAX_TEXT) -> str:
    out = text(name, v, max_chars=max_chars)
    if out is None:  # pragma: no cover - text() refuses blanks when not nullable
        raise invalid(pointer(name), "must not be blank")
    return out


def boolean(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise invalid(pointer(name), "must be true or false")
    return v


def choice(name: str, v: Any, allowed: Collection[str]) -> str:
    if not isinstance(v, str) or v not in allowed:
        raise invalid(pointer(name), f"must be one of {', '.join(allowed)}")
    return v


def integer(name: str, v: Any, *, minimum: int = 0, maximum: int = 2**31 - 1,
            nullable: bool = False) -> int | None:
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
        raise invalid(pointer(name), f"must be a whole number from {minimum} to {maximum}"
                      + (" or null" if nullable else ""))
    return v


def number(name: str, v: Any, *, share: bool = False) -> float | None:
    """A positive number of seconds (or, `share`, a share from 0 to 1); null allowed."""
    if v is None:
        return None
    ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
          and (0 <= v <= 1 if share else v > 0))
    if not ok:
        raise invalid(pointer(name), "must be a share from 0 to 1 or null" if share
                      else "must be a positive number or null")
    return float(v)


def only(data: dict[str, Any], writable: Collection[str], read_only: Collection[str]) -> None:
    """Unknown fields are refused (a typo would otherwise be ignored in silence); fields the
    API writes itself (id, createdAt, ...) may come back as read and are ignored."""
    for key in data:
        if key not in writable and key not in read_only:
            raise invalid(pointer(key), "is not a field of this resource")
