"""Answers checked against schemas/openapi.yaml: the documented operation of a request
(method and path), the schema of its status (or `default`), validated with jsonschema."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import jsonschema

from worker.api.openapi import document

METHODS = ("get", "put", "post", "delete", "patch")


@cache
def _operations() -> list[tuple[str, re.Pattern[str], dict[str, Any]]]:
    found = []
    for path, item in document()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
        for method in METHODS:
            if method in item:
                found.append((method.upper(), pattern, item[method]))
    return found


def operation(method: str, path: str) -> dict[str, Any] | None:
    for m, pattern, op in _operations():
        if m == method and pattern.match(path):
            return op
    return None


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node and node["$ref"].startswith("#/components/responses/"):
        node = document()["components"]["responses"][node["$ref"].rsplit("/", 1)[1]]
    return node


def check(method: str, path: str, status: int, body: Any, content_type: str) -> None:
    """Raise when the answer is not what the document says; an undocumented path's
    answer must be the error envelope."""
    op = operation(method, path.split("?")[0])
    if op is None:
        schema: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
    else:
        responses = op["responses"]
        documented = responses.get(str(status)) or responses.get("default")
        assert documented is not None, f"{method} {path}: {status} is not documented"
        content = _resolve(documented).get("content", {})
        if "application/json" not in content:
            return
        assert content_type == "application/json", f"{method} {path}: {content_type}"
        schema = content["application/json"]["schema"]
    root = {**schema, "components": document()["components"]}
    jsonschema.Draft202012Validator(root).validate(body)
