"""schemas/openapi.yaml and the API's routes agree: every route is documented and every
documented operation is served, with the same path parameters."""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from worker.api.app import make_app
from worker.api.context import Context
from worker.api.openapi import document
from worker.settings import Settings

METHODS = ("get", "put", "post", "delete", "patch")


def _served() -> set[tuple[str, str]]:
    app = make_app(Context(Settings(), None, None, None), None)  # type: ignore[arg-type]
    return {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.resource is not None and r.method != "HEAD"}


def _documented() -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in document()["paths"].items()
            for m in METHODS if m in item}


def test_it_is_openapi_3_1() -> None:
    assert document()["openapi"].startswith("3.1")


def test_every_route_is_documented_and_every_operation_served() -> None:
    assert _served() == _documented()


def test_path_parameters_are_declared() -> None:
    for path, item in document()["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        for method in METHODS:
            if method not in item:
                continue
            params = [*item.get("parameters", []), *item[method].get("parameters", [])]
            declared = set()
            for p in params:
                if "$ref" in p:
                    p = document()["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
                if p["in"] == "path":
                    declared.add(p["name"])
            assert declared == names, (method, path)


def test_every_operation_has_an_id_and_every_schema_is_valid() -> None:
    ids: list[Any] = [item[m]["operationId"] for item in document()["paths"].values()
                      for m in METHODS if m in item]
    assert len(ids) == len(set(ids))
    for schema in document()["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_answer_check_refuses_what_the_document_does_not_say() -> None:
    import pytest

    from tests.support.openapi import check

    good = {"error": {"code": "not_found", "message": "x", "details": []}}
    check("GET", "/api/dropship-providers/1.json", 404, good, "application/json")
    check("GET", "/api/no-such-route.json", 404, good, "application/json")
    with pytest.raises(jsonschema.ValidationError):
        check("GET", "/api/dropship-providers/1.json", 200, {"id": "one"}, "application/json")
    with pytest.raises(jsonschema.ValidationError):
        check("GET", "/api/no-such-route.json", 404, {"detail": "Not Found"}, "application/json")


def _properties(name: str) -> set[str]:
    schema = document()["components"]["schemas"][name]
    props = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        props |= _properties(part["$ref"].rsplit("/", 1)[1])
    return props


def test_the_documented_fields_are_the_handlers_fields() -> None:
    from worker.api import feeds, items, providers, runs

    assert _properties("FeedInput") == {*feeds.FIELDS, *feeds.READ_ONLY}
    assert _properties("Feed") == {*feeds.FIELDS, *feeds.READ_ONLY}
    assert _properties("ProviderInput") == {*providers.WRITABLE, *providers.READ_ONLY}
    assert _properties("Variant") == set(items.SHOWN.values())
    assert {*runs.COUNTS.values()} <= _properties("Run")
