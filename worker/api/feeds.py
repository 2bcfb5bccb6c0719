"""Inventory feeds: POST/GET/PUT /api/inventory-feeds(.json|/:id.json), and the seed's
singular POST /api/inventory-feed.json.

Every field is checked when saved (the whole feed after a PUT's changes, so that the
mapping is judged against the feed's resource type). Secrets are write-only: a URL's
password, the authenticationToken and the notifySecret come back as ***; sending *** back
keeps them. disabledReason says why the worker disabled a feed (its pulls kept failing)."""

from __future__ import annotations

import codecs
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from yarl import URL

from worker.api import fields
from worker.api.context import caller, context, json_object, path_id
from worker.api.errors import ApiError, invalid, json, not_found, pointer
from worker.api.mappings import check_mapping
from worker.api.pages import page, page_size, query_int
from worker.api.tokens import Caller
from worker.store import api as store
from worker.urls import mask

MASK = "***"
SCHEMES = ("http", "https", "ftp", "ftps", "sftp")
RESOURCE_TYPES = ("webhook", "ftp_csv", "spreadsheet", "xml", "json")
FREQUENCIES = ("never", "hourly", "daily", "custom", "webhook")

# camelCase field -> column, in the order a feed is shown.
FIELDS: dict[str, str] = {
    "dropshipProviderId": "dropship_provider_id", "name": "name", "enabled": "enabled",
    "resourceType": "resource_type", "resourceLocation": "resource_location",
    "authenticationToken": "authentication_token", "delimiter": "delimiter",
    "csvHasHeader": "csv_has_header", "decimalNotation": "decimal_notation",
    "encoding": "encoding", "mapping": "mapping",
    "automaticallyConnect": "automatically_connect",
    "automaticallyConnectByBarcode": "automatically_connect_by_barcode",
    "automaticallyConnectPrefix": "automatically_connect_prefix",
    "caseInsensitiveSkus": "case_insensitive_skus", "fetchCleanup": "fetch_cleanup",
    "fetchFrequency": "fetch_frequency", "fetchIntervalSeconds": "fetch_interval",
    "automatedFetching": "automated_fetching", "cacheImports": "cache_imports",
    "breakerMaxZeroedShare": "breaker_max_zeroed_share",
    "breakerMaxQuantityDrop": "breaker_max_quantity_drop",
    "breakerMaxRowsDrop": "breaker_max_rows_drop",
    "breakerMaxBytesDrop": "breaker_max_bytes_drop",
    "downloadDeadlineSeconds": "download_deadline_s", "runDeadlineSeconds": "run_deadline_s",
    "notifyUrl": "notify_url", "notifySecret": "notify_secret",
    "notifyRejectedShare": "notify_rejected_share", "autoDisableAfter": "auto_disable_after",
}
READ_ONLY = ("id", "createdAt", "updatedAt", "disabledReason", "disabledAt")
# A new feed's settings where the request leaves them out (the reference's defaults).
DEFAULTS: dict[str, Any] = {
    "enabled": True, "resourceType": "webhook", "resourceLocation": None,
    "authenticationToken": None, "delimiter": None, "csvHasHeader": True,
    "decimalNotation": "decimal", "encoding": None, "mapping": {},
    "automaticallyConnect": True, "automaticallyConnectByBarcode": False,
    "automaticallyConnectPrefix": "both", "caseInsensitiveSkus": False,
    "fetchCleanup": "enabled", "fetchFrequency": "hourly", "fetchIntervalSeconds": None,
    "automatedFetching": "enabled", "cacheImports": False, "breakerMaxZeroedShare": None,
    "breakerMaxQuantityDrop": None, "breakerMaxRowsDrop": None, "breakerMaxBytesDrop": None,
    "downloadDeadlineSeconds": None, "runDeadlineSeconds": None, "notifyUrl": None,
    "notifySecret": None, "notifyRejectedShare": None, "autoDisableAfter": None,
}


def render(row: asyncpg.Record) -> dict[str, Any]:
    """A feed as the API shows it: secrets masked."""
    out: dict[str, Any] = {"id": row["id"]}
    for name, column in FIELDS.items():
        out[name] = row[column]
    out["mapping"] = orjson.loads(row["mapping"]) if row["mapping"] else {}
    if out["resourceLocation"] is not None:
        out["resourceLocation"] = mask(out["resourceLocation"])
    second = out["mapping"].get("secondary") if isinstance(out["mapping"], dict) else None
    if isinstance(second, dict) and isinstance(second.get("url"), str):
        second["url"] = mask(second["url"])
    if out["authenticationToken"] is not None:
        out["authenticationToken"] = MASK
    if out["notifyUrl"] is not None:
        out["notifyUrl"] = mask(out["notifyUrl"])
    if out["notifySecret"] is not None:
        out["notifySecret"] = MASK
    out["disabledReason"] = row["disabled_reason"]
    out["disabledAt"] = row["disabled_at"].isoformat() if row["disabled_at"] else None
    out["createdAt"] = row["created_at"].isoformat()
    out["updatedAt"] = row["updated_at"].isoformat()
    return out


def _location(v: Any, stored: str | None) -> str | None:
    name = "resourceLocation"
    text = fields.text(name, v, nullable=True, max_chars=4000)
    if text is None:
        return None
    try:
        url = URL(text)
    except (ValueError, TypeError):
        raise invalid(pointer(name), "is not a URL") from None
    if url.scheme not in SCHEMES or not url.host:
        raise invalid(pointer(name), f"must be a {', '.join(SCHEMES)} URL with a host")
    if url.password == MASK:  # the masked form sent back: keep the stored password
        old = URL(stored) if stored else None
        if old is None or old.password is None or mask(old) != mask(url):
            raise invalid(pointer(name), "has the masked password *** but the stored URL "
                          "differs: send the password")
        return stored
    return text


def _with_secondary_url(mapping: Any, stored: str | None) -> Any:
    """The mapping, its second file's URL sent back masked (password ***) replaced by
    the stored one of the same address."""
    second = mapping.get("secondary") if isinstance(mapping, dict) else None
    text = second.get("url") if isinstance(second, dict) else None
    if not isinstance(text, str) or "://" not in text:
        return mapping
    where = pointer("mapping", "secondary", "url")
    try:
        url = URL(text)
    except (ValueError, TypeError):
        raise invalid(where, "is not a URL") from None
    if url.password != MASK:
        return mapping
    old = (orjson.loads(stored) or {}).get("secondary") if stored else None
    old_url = old.get("url") if isinstance(old, dict) else None
    if not isinstance(old_url, str) or mask(old_url) != mask(url):
        raise invalid(where, "has the masked password *** but the stored URL differs: "
                      "send the password")
    assert isinstance(second, dict)
    return {**mapping, "secondary": {**second, "url": old_url}}


def _token(v: Any, stored: str | None, name: str = "authenticationToken") -> str | None:
    if v == MASK:
        return stored
    return fields.text(name, v, nullable=True, max_chars=4000)


def _notify_url(v: Any, stored: str | None) -> str | None:
    """An http(s) URL; the masked form sent back keeps the stored one."""
    name = "notifyUrl"
    text = fields.text(name, v, nullable=True, max_chars=4000)
    if text is None:
        return None
    if stored is not None and text == mask(stored):
        return stored
    try:
        url = URL(text)
    except (ValueError, TypeError):
        raise invalid(pointer(name), "is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host or url.password == MASK:
        raise invalid(pointer(name), "must be an http or https URL with a host")
    return text


def _delimiter(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str) or len(v) != 1 or v in "\r\n\"":
        raise invalid(pointer("delimiter"), "must be one character (not a quote or a line "
                      "break), or null to sniff it")
    return v


def _encoding(v: Any) -> str | None:
    text = fields.text("encoding", v, nullable=True, max_chars=40)
    if text is None:
        return None
    try:
        codecs.lookup(text)
    except LookupError:
        raise invalid(pointer("encoding"), f"{text!r} is not a known encoding") from None
    return text


def columns(merged: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """The feed's columns from its fields (every one present in `merged`), each checked;
    `stored` has the secrets as stored, for *** sent back."""
    f = fields
    resource_type = f.choice("resourceType", merged["resourceType"], RESOURCE_TYPES)
    has_header = f.boolean("csvHasHeader", merged["csvHasHeader"])
    frequency = f.choice("fetchFrequency", merged["fetchFrequency"], FREQUENCIES)
    interval = f.number("fetchIntervalSeconds", merged["fetchIntervalSeconds"])
    if frequency == "custom" and interval is None:
        raise invalid(pointer("fetchIntervalSeconds"),
                      "is required when fetchFrequency is custom")
    provider = f.integer("dropshipProviderId", merged["dropshipProviderId"], minimum=1,
                         maximum=2**63 - 1)
    return {
        "dropship_provider_id": provider,
        "name": f.required_text("name", merged["name"]),
        "enabled": f.boolean("enabled", merged["enabled"]),
        "resource_type": resource_type,
        "resource_location": _location(merged["resourceLocation"],
                                       stored.get("resource_location")),
        "authentication_token": _token(merged["authenticationToken"],
                                       stored.get("authentication_token")),
        "delimiter": _delimiter(merged["delimiter"]),
        "csv_has_header": has_header,
        "decimal_notation": f.choice("decimalNotation", merged["decimalNotation"],
                                     ("decimal", "comma")),
        "encoding": _encoding(merged["encoding"]),
        "mapping": orjson.dumps(check_mapping(
            _with_secondary_url(merged["mapping"], stored.get("mapping")), resource_type,
            has_header,
            f.choice("decimalNotation", merged["decimalNotation"], ("decimal", "comma"))
        )).decode(),
        "automatically_connect": f.boolean("automaticallyConnect",
                                           merged["automaticallyConnect"]),
        "automatically_connect_by_barcode": f.boolean(
            "automaticallyConnectByBarcode", merged["automaticallyConnectByBarcode"]),
        "automatically_connect_prefix": f.choice(
            "automaticallyConnectPrefix", merged["automaticallyConnectPrefix"],
            ("both", "prefixOnly")),
        "case_insensitive_skus": f.boolean("caseInsensitiveSkus", merged["caseInsensitiveSkus"]),
        "fetch_cleanup": f.choice("fetchCleanup", merged["fetchCleanup"],
                                  ("enabled", "disabled")),
        "fetch_frequency": frequency,
        "fetch_interval": interval,
        "automated_fetching": f.choice("automatedFetching", merged["automatedFetching"],
                                       ("enabled", "disabled")),
        "cache_imports": f.boolean("cacheImports", merged["cacheImports"]),
        **{FIELDS[name]: f.number(name, merged[name], share=True)
           for name in ("breakerMaxZeroedShare", "breakerMaxQuantityDrop",
                        "breakerMaxRowsDrop", "breakerMaxBytesDrop")},
        **{FIELDS[name]: f.number(name, merged[name])
           for name in ("downloadDeadlineSeconds", "runDeadlineSeconds")},
        "notify_url": _notify_url(merged["notifyUrl"], stored.get("notify_url")),
        "notify_secret": _token(merged["notifySecret"], stored.get("notify_secret"),
                                "notifySecret"),
        "notify_rejected_share": f.number("notifyRejectedShare", merged["notifyRejectedShare"],
                                          share=True),
        "auto_disable_after": f.integer("autoDisableAfter", merged["autoDisableAfter"],
                                        maximum=1_000_000, nullable=True),
    }


async def _provider_in_scope(pool: asyncpg.Pool, who: Caller, provider_id: int) -> None:
    if await store.get_provider(pool, provider_id, who.scope) is None:
        raise invalid(pointer("dropshipProviderId"), f"no dropship provider {provider_id}")


async def create(request: web.Request) -> web.Response:
    ctx, who = context(request), caller(request)
    data = await json_object(request)
    fields.only(data, FIELDS, READ_ONLY)
    merged = {**DEFAULTS, "dropshipProviderId": who.provider_id, "name": None,
              **{k: v for k, v in data.items() if k in FIELDS}}
    if merged["dropshipProviderId"] is None:
        raise invalid(pointer("dropshipProviderId"), "is required")
    values = columns(merged, {})
    await _provider_in_scope(ctx.pool, who, values["dropship_provider_id"])
    feed_id = await store.insert_feed(ctx.pool, values)
    row = await store.get_feed(ctx.pool, feed_id, None)
    if row is None:  # pragma: no cover - just inserted
        raise not_found("inventory feed")
    return json(render(row), status=201,
                headers={"Location": f"/api/inventory-feeds/{feed_id}.json"})


async def show(request: web.Request) -> web.Response:
    row = await store.get_feed(context(request).pool, path_id(request), caller(request).scope)
    if row is None:
        raise not_found("inventory feed")
    return json(render(row))


async def index(request: web.Request) -> web.Response:
    limit, after = page_size(request)
    provider = query_int(request, "dropshipProviderId", 0, 2**63 - 1) or None
    rows = await store.list_feeds(context(request).pool, caller(request).scope, provider,
                                  after, limit)
    return page(request, [render(r) for r in rows], rows, limit)


async def update(request: web.Request) -> web.Response:
    ctx, who, feed_id = context(request), caller(request), path_id(request)
    row = await store.get_feed(ctx.pool, feed_id, who.scope)
    if row is None:  # before the body: another's id is 404, whatever the body
        raise not_found("inventory feed")
    data = await json_object(request)
    fields.only(data, FIELDS, READ_ONLY)
    current = render(row)
    merged = {**current, **{k: v for k, v in data.items() if k in FIELDS}}
    values = columns(merged, dict(row))
    if values["dropship_provider_id"] != row["dropship_provider_id"]:
        await _provider_in_scope(ctx.pool, who, values["dropship_provider_id"])
    if not await store.update_feed(ctx.pool, feed_id, who.scope, values):
        raise not_found("inventory feed")  # pragma: no cover - gone meanwhile
    ctx.forget_feeds(feed_id)
    updated = await store.get_feed(ctx.pool, feed_id, None)
    if updated is None:  # pragma: no cover
        raise ApiError(404, "not_found", "inventory feed not found")
    return json(render(updated))
