"""Around every request: metrics, the error envelope, JSON only with a size cap, auth."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from worker import logs, metrics
from worker.api import tokens
from worker.api.context import CALLER, context
from worker.api.errors import ApiError, response
from worker.retry import Failure, classify, describe
from worker.urls import scrub

log = logs.get(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Answered without a token: probes, metrics and the API's own description.
PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/api/openapi.json"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request counts and latency per route (the route's pattern, never the raw path)."""
    started = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    finally:
        # Labels from bounded sets only: a caller's made-up paths or methods add no series.
        route = _route(request)
        method = request.method if request.method in _METHODS else "other"
        metrics.API_REQUESTS.labels(route, method, str(status)).inc()
        metrics.API_LATENCY.labels(route, method).observe(time.perf_counter() - started)


@web.middleware
async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error in one shape; a 5xx says nothing of the cause (the log has it, secrets
    masked, without a stack trace)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    except web.HTTPRequestEntityTooLarge:
        limit = context(request).settings.api_max_body_bytes
        return response(413, "body_too_large", f"the body is larger than {limit} bytes")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return response(exc.status, code, exc.reason, None, headers)
    except Exception as exc:
        s = context(request).settings
        error = scrub(describe(exc), s.database_url, s.amqp_url)[:500]
        kind = classify(exc)
        if kind is not Failure.PERMANENT:  # the database away, a deadlock: worth a retry
            log.warning("api.unavailable", route=_route(request), method=request.method,
                        kind=kind.value, error=error)
            return response(503, "unavailable", "a service the API needs did not answer; "
                            "try again shortly", headers={"Retry-After": "1"})
        log.error("api.failed", route=_route(request), method=request.method, error=error)
        return response(500, "internal", "the request failed on our side; try again later")


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A bearer token, JSON bodies only (415), and the body cap told before it is read
    (413)."""
    if request.path in PUBLIC:
        return await handler(request)
    ctx = context(request)
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    caller = (await tokens.authenticate(ctx.pool, token.strip(), ctx.tokens)
              if scheme.lower() == "bearer" else None)
    if caller is None:
        raise ApiError(401, "unauthorized", "send a valid token: Authorization: Bearer <token>",
                       headers={"WWW-Authenticate": 'Bearer realm="feed-worker"'})
    request[CALLER] = caller
    if request.method in ("POST", "PUT", "PATCH"):
        if request.content_length is not None and \
                request.content_length > ctx.settings.api_max_body_bytes:
            raise ApiError(413, "body_too_large",
                           f"the body is larger than {ctx.settings.api_max_body_bytes} bytes")
        mime = request.content_type
        if request.body_exists and mime != "application/json" and not mime.endswith("+json"):
            raise ApiError(415, "unsupported_media_type",
                           f"send JSON (Content-Type: application/json), not {mime!r}"[:200])
    return await handler(request)
