"""A frozen dataclass of settings read from the environment: each field's variable
(`FEED_WORKER_<NAME>`, or its metadata's `env`), its value converted by the field's type,
and the table of variables, defaults and help texts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from worker.errors import ConfigError


def env_name(cls: type, field_name: str) -> str:
    for f in fields(cls):
        if f.name == field_name and "env" in f.metadata:
            return str(f.metadata["env"])
    return "FEED_WORKER_" + field_name.upper()


def read(cls: type, environ: Mapping[str, str]) -> dict[str, Any]:
    """The fields the environment sets (blank: not set), converted."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        name = env_name(cls, f.name)
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        values[f.name] = _convert(name, raw, _CONVERTERS[str(f.type)])
    return values


def describe(cls: type, shown: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(variable, default, help) for every field; `shown`: defaults written otherwise."""
    rows = []
    for f in fields(cls):
        default = shown.get(f.name, str(f.default))
        if isinstance(f.default, bool):
            default = default.lower()
        rows.append((env_name(cls, f.name), default, str(f.metadata.get("help", ""))))
    return rows


def _convert(name: str, raw: str, conv: Callable[[str], Any]) -> Any:
    try:
        return conv(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid value") from None


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "str": str, "int": int, "float": float, "bool": _bool,
}
