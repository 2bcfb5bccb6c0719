"""A feed's notification settings through the HTTP API: saved, checked, the secret and the
URL's password write-only; why the worker disabled a feed shown, and cleared on enabling it."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
import pytest

from tests.support.apiprocess import ApiProcess, Client, feed, provider

HOOK_PASSWORD = "hook-pa55-very-secret"
HOOK_SECRET = "hmac-key-very-secret"


async def test_notification_settings_are_saved_and_their_secrets_never_shown(
        api: ApiProcess, admin: Client, pool: asyncpg.Pool) -> None:
    p = await provider(admin)
    url = f"https://ops:{HOOK_PASSWORD}@hooks.example.com/feeds"
    f = await feed(admin, p, notifyUrl=url, notifySecret=HOOK_SECRET, notifyRejectedShare=0.1,
                   autoDisableAfter=3)
    assert f["notifyUrl"] == "https://ops:***@hooks.example.com/feeds"
    assert (f["notifySecret"], f["notifyRejectedShare"], f["autoDisableAfter"]) == \
        ("***", 0.1, 3)
    assert (f["disabledReason"], f["disabledAt"]) == (None, None)
    # sent back as read, the secrets are kept
    status, body, _ = await admin.call("PUT", f"/api/inventory-feeds/{f['id']}.json",
                                       {**f, "autoDisableAfter": 5})
    assert (status, body["autoDisableAfter"]) == (200, 5), body
    stored = await pool.fetchrow("SELECT notify_url, notify_secret FROM inventory_feeds "
                                 "WHERE id = $1", f["id"])
    assert stored is not None
    assert tuple(stored) == (url, HOOK_SECRET)
    # the worker disabled it: the reason is shown, read-only, and goes when it is enabled
    await pool.execute("UPDATE inventory_feeds SET enabled = false, disabled_at = now(), "
                       "disabled_reason = 'disabled after 5 failed pulls in a row; last "
                       "error: HTTP 500' WHERE id = $1", f["id"])
    status, shown, _ = await admin.call("GET", f"/api/inventory-feeds/{f['id']}.json")
    assert (shown["enabled"], shown["disabledReason"]) == (
        False, "disabled after 5 failed pulls in a row; last error: HTTP 500")
    assert shown["disabledAt"] is not None
    status, body, _ = await admin.call("PUT", f"/api/inventory-feeds/{f['id']}.json",
                                       {**shown, "enabled": True})
    assert (status, body["enabled"], body["disabledReason"]) == (200, True, None), body
    assert body["disabledAt"] == shown["disabledAt"]
    # cleared: NULL means the worker's settings
    status, body, _ = await admin.call("PUT", f"/api/inventory-feeds/{f['id']}.json",
                                       {"notifyUrl": None, "notifySecret": None})
    assert (status, body["notifyUrl"], body["notifySecret"]) == (200, None, None)

    everything = orjson.dumps([f, shown]).decode() + api.log_text()
    assert HOOK_PASSWORD not in everything
    assert HOOK_SECRET not in everything


@pytest.mark.parametrize(("body", "pointer"), [
    ({"notifyUrl": "ftp://hooks.example.com/x"}, "/notifyUrl"),
    ({"notifyUrl": "not a url"}, "/notifyUrl"),
    ({"notifyUrl": "https://ops:***@hooks.example.com/x"}, "/notifyUrl"),
    ({"notifySecret": 5}, "/notifySecret"),
    ({"notifyRejectedShare": 1.5}, "/notifyRejectedShare"),
    ({"autoDisableAfter": -1}, "/autoDisableAfter"),
    ({"autoDisableAfter": 2.5}, "/autoDisableAfter"),
])
async def test_bad_notification_settings_are_refused_with_their_pointer(
        admin: Client, body: dict[str, Any], pointer: str) -> None:
    p = await provider(admin)
    status, got, _ = await admin.call("POST", "/api/inventory-feeds.json",
                                      {"dropshipProviderId": p, "name": "x", **body})
    assert status == 422, got
    assert got["error"]["details"][0]["pointer"] == pointer
