"""A feed's mapping checked when the feed is saved, with a JSON pointer to the problem."""

from __future__ import annotations

from typing import Any

from worker.api.errors import invalid, pointer


def check_mapping(raw: Any, resource_type: str, csv_has_header: bool) -> dict[str, Any]:
    """The mapping to store; raises a 422 naming the first problem."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid(pointer("mapping"), "must be an object")
    return raw
