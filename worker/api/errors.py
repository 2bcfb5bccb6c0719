"""The API's one error envelope: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    """A caller's mistake (4xx) or a service that is away (503), with what to tell them."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details
        self.headers = dict(headers or {})


def invalid(pointer: str, reason: str) -> ApiError:
    """422 with one field's problem: its JSON pointer in the request body and why."""
    return ApiError(422, "invalid", f"{pointer or 'the body'}: {reason}",
                    [{"pointer": pointer, "reason": reason}])


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def pointer(*steps: str | int) -> str:
    """A JSON pointer (RFC 6901) from its steps."""
    return "".join("/" + str(s).replace("~", "~0").replace("/", "~1") for s in steps)


def body(code: str, message: str, details: Any = None) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message,
                                   "details": details if details is not None else []}})


def response(status: int, code: str, message: str, details: Any = None,
             headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=body(code, message, details),
                        content_type="application/json", headers=headers)


def json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON response (orjson)."""
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json",
                        headers=headers)
