"""Notifications' pure parts: which run ends notify, the body, the signature, the settings."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from referencing import Registry, Resource

from worker.errors import ConfigError
from worker.notify import message
from worker.settings import Settings

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
RUN_COMPLETED = orjson.loads((SCHEMAS / "run-completed.schema.json").read_bytes())
VALIDATOR = jsonschema.Draft202012Validator(
    orjson.loads((SCHEMAS / "notification.schema.json").read_bytes()),
    registry=Registry().with_resource(RUN_COMPLETED["$id"],
                                      Resource.from_contents(RUN_COMPLETED)))
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status", "rows_read", "rejected", "share", "event"), [
    ("failed", 0, 0, 0.05, "run.failed"),
    ("held", 100, 0, 0.05, "run.held"),
    ("succeeded", 100, 6, 0.05, "run.rejects"),
    ("succeeded", 100, 5, 0.05, None),      # at the threshold: not above it
    ("succeeded", 100, 1, 0.0, "run.rejects"),
    ("succeeded", 100, 100, 1.0, None),     # 1: never
    ("succeeded", 100, 0, 0.0, None),
    ("succeeded", 0, 3, 0.5, "run.rejects"),  # rejects of a run that read nothing else
    ("skipped", 0, 0, 0.0, None),
])
def test_which_run_ends_notify(status: str, rows_read: int, rejected: int, share: float,
                               event: str | None) -> None:
    assert message.run_event(status, rows_read, rejected, share) == event
    if event is not None:
        assert message.may_notify(status, rejected)


def test_a_clean_success_is_not_even_looked_at() -> None:
    assert not message.may_notify("succeeded", 0)
    assert not message.may_notify("skipped", 0)


def _run(**over: Any) -> dict[str, Any]:
    run = {"id": 7, "inventory_feed_id": 3, "kind": "pull", "status": "failed",
           "started_at": NOW, "finished_at": NOW, "rows_read": 0, "inserted": 0, "updated": 0,
           "unchanged": 0, "rejected": 0, "duplicates": 0, "bytes": 0, "timings": "{}",
           "details": "{}", "error": "HTTP 404 Not Found from https://acme:***@x/f.csv"}
    return {**run, **over}


def test_a_run_notification_carries_the_run_completed_report() -> None:
    body = orjson.loads(message.body("run.failed", 3, "Acme stock", run=_run(),
                                     feed_disabled="disabled after 3 failed pulls", now=NOW))
    VALIDATOR.validate(body)
    jsonschema.validate(body["run"], RUN_COMPLETED)
    assert body["run"]["runId"] == 7
    assert (body["event"], body["feedId"], body["feedDisabled"]) == (
        "run.failed", 3, "disabled after 3 failed pulls")
    assert body["at"] == "2026-12-05T10:00:00+00:00"


def test_a_stale_notification_has_no_run() -> None:
    stale = {"lastSucceededRunId": None, "lastSucceededAt": None, "everySeconds": 3600.0}
    body = orjson.loads(message.body("feed.stale", 3, "Acme", stale=stale, now=NOW))
    VALIDATOR.validate(body)
    assert (body["run"], body["stale"]) == (None, stale)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    payload = b'{"event":"run.failed"}'
    headers = message.headers("k3y", "run.failed", "run-7", payload, timestamp=1_700_000_000)
    expected = hmac.new(b"k3y", b"1700000000." + payload, hashlib.sha256).hexdigest()
    assert headers["X-Feed-Worker-Signature"] == f"sha256={expected}"
    assert headers["X-Feed-Worker-Timestamp"] == "1700000000"
    assert (headers["X-Feed-Worker-Event"], headers["X-Feed-Worker-Delivery"]) == (
        "run.failed", "run-7")
    assert "k3y" not in "".join(headers.values())


def test_no_secret_no_signature() -> None:
    assert "X-Feed-Worker-Signature" not in message.headers(None, "run.held", "run-1", b"{}")


@pytest.mark.parametrize(("secret", "stamp", "payload", "now", "ok"), [
    ("k3y", 1000, b"{}", 1000, True),
    ("k3y", 1000, b"{}", 1299, True),
    ("k3y", 1000, b"{}", 1301, False),       # too old: a replay
    ("other", 1000, b"{}", 1000, False),     # another key
    ("k3y", 1000, b"{ }", 1000, False),      # the body changed on the way
])
def test_verify(secret: str, stamp: int, payload: bytes, now: float, ok: bool) -> None:
    signed = message.signature("k3y", 1000, b"{}")
    assert message.verify(secret, str(stamp), signed, payload, now=now) is ok


def test_verify_refuses_what_is_missing() -> None:
    assert not message.verify("k3y", None, "sha256=00", b"{}")
    assert not message.verify("k3y", "12x", "sha256=00", b"{}")


def test_the_settings_never_show_the_secret() -> None:
    s = Settings.from_env({"FEED_WORKER_NOTIFY_URL": "https://hooks.example/x",
                           "FEED_WORKER_NOTIFY_SECRET": "s3cr3t-value"})
    assert s.notify_secret == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(s)


@pytest.mark.parametrize(("env", "error"), [
    ({"FEED_WORKER_NOTIFY_URL": "ftp://hooks.example/x"}, "FEED_WORKER_NOTIFY_URL"),
    ({"FEED_WORKER_NOTIFY_REJECTED_SHARE": "1.5"}, "FEED_WORKER_NOTIFY_REJECTED_SHARE"),
    ({"FEED_WORKER_AUTO_DISABLE_AFTER": "-1"}, "FEED_WORKER_AUTO_DISABLE_AFTER"),
    ({"FEED_WORKER_NOTIFY_ATTEMPTS": "0"}, "FEED_WORKER_NOTIFY_ATTEMPTS"),
    ({"FEED_WORKER_NOTIFY_QUEUE": "0"}, "FEED_WORKER_NOTIFY_QUEUE"),
    ({"FEED_WORKER_NOTIFY_TIMEOUT_S": "0"}, "FEED_WORKER_NOTIFY_TIMEOUT_S"),
])
def test_bad_notification_settings(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        Settings.from_env(env)
