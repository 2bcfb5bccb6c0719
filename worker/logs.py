"""structlog set up once: JSON lines in production, console rendering on a terminal.

Every log line goes through one sink on stderr. A command that draws a progress bar there
routes the lines above the bar while it is drawn (`above`), so no line is glued into a
frame of the bar. A command that prints an outcome itself names the events that say the
same thing (`reported_by_command`); they are dropped, so each failure is printed once.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import structlog


class _Sink:
    """stderr, or a writer that puts each line above a progress bar."""

    def __init__(self) -> None:
        self.above: Callable[[str], None] | None = None

    def write(self, text: str) -> int:
        if self.above is not None:
            # One call per record (WriteLogger and StreamHandler write line and newline at
            # once): the bar is cleared, the line written, the bar drawn again below it.
            self.above(text.rstrip("\n"))
        else:
            sys.stderr.write(text)
        return len(text)

    def flush(self) -> None:
        if self.above is None:
            sys.stderr.flush()


_SINK = _Sink()
_REPORTED: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "reported_by_command", default=frozenset())


@contextlib.contextmanager
def above(write: Callable[[str], None]) -> Iterator[None]:
    """While the block runs, log lines go to `write` (one line each, no newline)."""
    _SINK.above = write
    try:
        yield
    finally:
        _SINK.above = None


@contextlib.contextmanager
def reported_by_command(*events: str) -> Iterator[None]:
    """While the block runs, these events are not logged: the command prints them."""
    token = _REPORTED.set(frozenset(events))
    try:
        yield
    finally:
        _REPORTED.reset(token)


def _drop_reported(_: Any, __: str, event_dict: Any) -> Any:
    if event_dict.get("event") in _REPORTED.get():
        raise structlog.DropEvent
    return event_dict


def _orjson_dumps(obj: Any, default: Any) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure(level: str = "info", fmt: str = "auto") -> None:
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if console
        else structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    )
    structlog.configure(
        processors=[
            _drop_reported,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.WriteLoggerFactory(file=_SINK),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    # Libraries log through the standard module; keep their warnings, in the same stream.
    logging.basicConfig(level=logging.WARNING, stream=_SINK,
                        format="%(name)s %(message)s")


def get(name: str) -> Any:
    return structlog.get_logger(name)
