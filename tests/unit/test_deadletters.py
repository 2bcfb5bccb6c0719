"""Dead letters as data: durations, what a dead letter says, selection, replay headers,
and the requeue report (pure: no broker, no database)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from worker import constants as C
from worker.deadletters import DeadLetter, Selection, describe, parse_duration, replay_headers
from worker.replay import Replay, Sent, report
from worker.store.replay import Outcome

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200),
                                                ("7d", 604800), (" 0s ", 0)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "h", "1.5h", "2 weeks", "-1d", "3w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration like 90s"):
        parse_duration(text)


def _dead(message_id: str = "m", reason: str = "feed 1 is disabled", body: bytes = b"{}",
          at: datetime | None = NOW, routing_key: str = C.ROUTING_UPDATE) -> DeadLetter:
    return DeadLetter(message_id, routing_key, reason, body, at, None)


def test_a_worker_dead_letter_describes_itself() -> None:
    d = describe({C.HEADER_ERROR: b"bad schema", C.HEADER_ORIGINAL_ROUTING_KEY: "feed.pull",
                  C.HEADER_DEAD_LETTERED_AT: "2026-12-05T11:00:00+00:00",
                  C.HEADER_REPLAY_ID: "r1"}, "ignored", "m1", b'{"feedId": 4}')
    assert d == DeadLetter("m1", "feed.pull", "bad schema", b'{"feedId": 4}',
                           NOW - timedelta(hours=1), "r1", ordered=False)
    assert d.feed_id == 4
    assert not d.ordered  # no time to order it by: replayed, it would count as new
    assert describe({C.HEADER_FIRST_RECEIVED: "2026-12-05T10:00:00+00:00"}, "k", None,
                    b"").ordered
    assert describe({C.HEADER_TIMESTAMP_MS: 1}, "k", None, b"").ordered


def test_a_broker_dead_letter_takes_reason_and_time_from_x_death() -> None:
    deaths = [{"reason": "delivery_limit", "time": datetime(2026, 12, 5, 11, 30)},
              {"reason": "expired", "time": datetime(2026, 12, 5, 10, 0)}]
    d = describe({C.HEADER_DEATH: deaths}, "feed.update", None, b"[1]")
    assert (d.routing_key, d.reason) == ("feed.update", "broker: delivery_limit")
    assert d.dead_lettered_at == NOW - timedelta(hours=2)  # the earliest, naive = UTC
    assert d.feed_id is None  # not an object
    assert d.ordered
    assert describe({}, None, None, b"").reason == "broker: unknown"


@pytest.mark.parametrize("body", [b"{not json", b'{"feedId": true}', b'{"feedId": "4"}', b""])
def test_bodies_without_a_feed_id(body: bytes) -> None:
    assert _dead(body=body).feed_id is None


def test_selection_needs_every_filter_to_match() -> None:
    d = _dead(body=b'{"feedId": 3}', at=NOW - timedelta(minutes=31))
    assert Selection().matches(d, NOW)
    assert Selection(message_ids=frozenset({"m", "n"})).matches(d, NOW)
    assert not Selection(message_ids=frozenset({"n"})).matches(d, NOW)
    assert Selection(reason="IS DISABLED").matches(d, NOW)
    assert not Selection(reason="schema").matches(d, NOW)
    assert Selection(feed_id=3).matches(d, NOW)
    assert not Selection(feed_id=4).matches(d, NOW)
    assert Selection(older_than=timedelta(minutes=30)).matches(d, NOW)
    assert not Selection(older_than=timedelta(minutes=31)).matches(d, NOW)
    assert not Selection(older_than=timedelta(0)).matches(_dead(at=None), NOW)
    assert not Selection(reason="disabled", feed_id=4).matches(d, NOW)


def test_replay_headers_keep_order_times_and_the_publishers_and_add_the_replay_id() -> None:
    headers = {C.HEADER_TIMESTAMP_MS: 1_700_000_000_000, C.HEADER_FIRST_RECEIVED: "2026-01-01",
               C.HEADER_ERROR: "x", C.HEADER_ERROR_CLASS: "BadMessage",
               C.HEADER_DEAD_LETTERED_AT: "2026-01-02", C.HEADER_ORIGINAL_ROUTING_KEY: "k",
               C.HEADER_ORIGINAL_QUEUE: "q", C.HEADER_REPLAY_ID: "earlier",
               C.HEADER_DELIVERY_COUNT: 3, C.HEADER_DEATH: [{"time": NOW}],
               "x-first-death-reason": "expired", "x-last-death-queue": "q",
               "x-tenant": "acme", "trace": "t"}
    assert replay_headers(headers, "r2") == {
        C.HEADER_TIMESTAMP_MS: 1_700_000_000_000, C.HEADER_FIRST_RECEIVED: "2026-01-01",
        "x-tenant": "acme", "trace": "t", C.HEADER_REPLAY_ID: "r2"}


def test_a_broker_dead_letter_is_not_brand_new_when_replayed() -> None:
    deaths = [{"time": datetime(2026, 12, 5, 11, 0)}, {"time": datetime(2026, 12, 5, 9, 0)}]
    assert replay_headers({C.HEADER_DEATH: deaths}, "r") == {
        C.HEADER_FIRST_RECEIVED: "2026-12-05T09:00:00+00:00", C.HEADER_REPLAY_ID: "r"}
    assert replay_headers(None, "r") == {C.HEADER_REPLAY_ID: "r"}


def _report(replay: Replay) -> tuple[int, list[str]]:
    out = io.StringIO()
    code = report(replay, out)
    return code, out.getvalue().splitlines()


def test_report_lines_summary_and_exit_code() -> None:
    replay = Replay("r", dry_run=False, waited_s=5.0, messages=[
        Sent(_dead("a"), outcome=Outcome("applied", 2, 2, 0, 0, None)),
        Sent(_dead("b"), outcome=Outcome("stale", 2, 0, 2, 0, None)),
        Sent(_dead("c"), outcome=Outcome("repeat", 2, 0, 0, 0, None)),
        Sent(_dead("p", routing_key=C.ROUTING_PULL)),
    ])
    code, lines = _report(replay)
    assert code == 0
    assert lines == [
        "a\tapplied\tvariants=2 applied=2 stale=0 rejected=0",
        "b\tstale\tvariants=2 applied=0 stale=2 rejected=0",
        "c\trepeat\tvariants=2 applied=0 stale=0 rejected=0",
        "p\tsent (pull)",
        "sent 4: applied 1, stale 1, rejected 0, repeat 1, dead-lettered again 0, pending 0, "
        "pull 1 (replay r)",
    ]
    replay.messages.append(Sent(_dead("d")))  # nothing recorded in time
    code, lines = _report(replay)
    assert (code, lines[4]) == (1, "d\tpending\tno outcome recorded within 5 s")
    replay.messages[-1] = Sent(_dead("e"), error="returned: NO_ROUTE")
    code, lines = _report(replay)
    assert code == 1
    assert lines[4] == "e\tnot sent\treturned: NO_ROUTE; it stays in inventory.dead-letter"
    assert lines[-1] == "not sent 1: still in inventory.dead-letter"


def test_a_dry_run_warns_of_updates_without_an_order_time() -> None:
    plain = DeadLetter("a", C.ROUTING_UPDATE, "x", b"", None, None, ordered=False)
    pull = DeadLetter("p", C.ROUTING_PULL, "x", b"", None, None, ordered=False)
    code, lines = _report(Replay("r", dry_run=True, messages=[Sent(plain), Sent(pull),
                                                                Sent(_dead("b"))]))
    assert (code, lines) == (0, [
        "a\twould send to feed.update\tx\tno order time: its variants would count as new",
        "p\twould send to feed.pull\tx",
        "b\twould send to feed.update\tfeed 1 is disabled",
        "dry run: would send 3 message(s); nothing was sent"])


def test_dead_lettered_again_fails_and_no_wait_reports_sent() -> None:
    dead = Sent(_dead("a"), outcome=Outcome("dead-lettered", 0, 0, 0, 0, "feed 1 is disabled"))
    code, lines = _report(Replay("r", dry_run=False, waited_s=1.0, messages=[dead]))
    assert (code, lines[0]) == (1, "a\tdead-lettered again\tfeed 1 is disabled")
    code, lines = _report(Replay("r", dry_run=False, messages=[Sent(_dead("a"))]))
    assert (code, lines) == (0, ["a\tsent", "sent 1 (replay r; outcomes not awaited)"])
    code, lines = _report(Replay("r", dry_run=False, missing_ids=["zz"]))
    assert (code, lines[0]) == (1, "zz\tnot found")
