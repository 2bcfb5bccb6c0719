"""The API's OpenAPI 3.1 document (schemas/openapi.yaml), served as JSON at
/api/openapi.json; tests check it against the routes and the answers."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from worker.errors import ConfigError


def document_path() -> Path:
    """schemas/openapi.yaml of a source checkout, or the copy packed into a wheel."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "schemas" / "openapi.yaml",
                      package / "_schemas" / "openapi.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError("schemas/openapi.yaml not found beside the worker package")


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(document_path().read_text(encoding="utf-8"))
    return loaded


@cache
def _document_json() -> bytes:
    return orjson.dumps(document())


async def serve(_: web.Request) -> web.Response:
    return web.Response(body=_document_json(), content_type="application/json")
