"""A new user's path through the README, as real commands against the real services: each
test is one thing that did not work or surprised (new feeds and the scheduler, feed checks
before publishing, exit codes, the progress output, help, the daemon's instructions, the
publisher contract, where `feed-worker` is, the dead-letter metrics)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import broker, feeds
from tests.support.commands import feed_worker
from tests.support.feedserver import FeedServer
from tests.support.process import DaemonProcess
from tests.support.services import AMQP_URL, dsn_for
from tests.support.wait import until
from worker import constants as C
from worker.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
README_URL = "https://acme:s3cret@feeds.acme.example/stock.csv"


def _readme_block(after: str, lang: str) -> str:
    """The first ```lang block of the README after the text `after`."""
    start = README.index(f"```{lang}\n", README.index(after)) + len(lang) + 4
    block = README[start:README.index("```", start)]
    return "\n".join(line.strip() for line in block.splitlines())


async def _readme_feeds(pool: asyncpg.Pool, url: str) -> None:
    """Step 1 of "Send the worker work", as written, with the feed at `url`."""
    sql = _readme_block("## Send the worker work", "sql").replace(README_URL, url)
    await pool.execute(sql)


async def _runs(pool: asyncpg.Pool, feed_id: int) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM feed_runs WHERE inventory_feed_id = $1 ORDER BY id",
                            feed_id)


# 1. A new feed is pulled by the scheduler at once, as the README now says.
async def test_a_new_feed_is_pulled_at_once_unless_automated_fetching_is_disabled(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer,
        processes: list[DaemonProcess]) -> None:
    assert "is due at once" in README
    feed_server.add("/stock.csv", b"external_id,qty\nA1,3\n", auth=("acme", "s3cret"))
    await _readme_feeds(pool, feed_server.url("/stock.csv", "acme", "s3cret"))
    quiet = await feeds.make_feed(pool, feed_server.url("/stock.csv", "acme", "s3cret"),
                                  automated_fetching="disabled")
    daemon = DaemonProcess(db_url, "first-use", FEED_WORKER_SCHEDULER="true",
                           FEED_WORKER_SCHEDULE_TICK_S="0.5")
    processes.append(daemon)
    await daemon.start()

    async def pulled() -> list[asyncpg.Record]:
        return [r for r in await _runs(pool, 1) if r["status"] == "succeeded"]

    await until(pulled, timeout_s=30, what="the scheduler to pull the README's feed")
    assert "A1" in await feeds.items(pool, 1)
    assert await _runs(pool, quiet) == []
    state = await pool.fetchval(
        "SELECT state FROM feed_schedule WHERE inventory_feed_id = $1", quiet)
    assert state == "not scheduled"


# 2. Commands that take a feed check it before publishing.
async def test_publish_checks_the_feed_first_and_sends_nothing_it_would_dead_letter(
        clean_broker: None, pool: asyncpg.Pool, db_url: str, settings: Settings,
        tmp_path: Path) -> None:
    pulled = await feeds.make_feed(pool, "https://feeds.example/stock.csv")
    webhook = await feeds.make_feed(pool, None, resource_type="webhook")
    disabled = await feeds.make_feed(pool, None, resource_type="webhook", enabled=False)
    async with broker.running_daemon(settings):
        pass  # the topology, declared: a message sent now would wait in its queue
    items = tmp_path / "items.json"
    items.write_bytes(b'[{"externalId": "1", "inventoryQuantity": 2}]')
    cases = [
        (("publish", "pull", "--feed", "999"), "publish pull", "feed 999 does not exist"),
        (("publish", "update", "--feed", "999", str(items)), "publish update",
         "feed 999 does not exist"),
        (("publish", "pull", "--feed", str(webhook)), "publish pull",
         f"feed {webhook} has resource_type 'webhook', which cannot be pulled"),
        (("publish", "update", "--feed", str(pulled), str(items)), "publish update",
         f"feed {pulled} is pulled (resource_type 'ftp_csv')"),
        (("publish", "update", "--feed", str(disabled), str(items)), "publish update",
         f"feed {disabled} is disabled"),
        (("import", "--feed", "999"), "import", "feed 999 does not exist"),
    ]
    for args, command, reason in cases:
        code, out, err = await feed_worker(*args, database_url=db_url)
        assert code == 2, (args, err)
        assert out == ""
        [line] = err.splitlines()
        assert line.startswith(f"feed-worker {command}: error: {reason}"), line
    for queue in (C.QUEUE_PULL, C.QUEUE_UPDATE):
        assert await broker.queue_depth(queue) == 0
    code, out, err = await feed_worker("publish", "update", "--feed", str(pulled), str(items),
                                       "--to-pulled-feed", database_url=db_url)
    assert code == 0, err
    assert await broker.queue_depth(C.QUEUE_UPDATE) == 1


# 3. Exit codes as documented; a skip is not an error.
async def test_import_without_its_database_could_not_start_and_a_skip_is_no_error(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    code, _, err = await feed_worker("import", "--feed", "1",
                                     database_url=dsn_for("fw_no_such_database"))
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("feed-worker import: error: the database of ")
    assert "does not exist" in line
    url = feed_server.add("/cached.csv", b"external_id,qty\nA,1\n", etag='"v1"')
    feed_id = await feeds.make_feed(pool, url, cache_imports=True)
    code, _, err = await feed_worker("import", "--feed", str(feed_id), database_url=db_url)
    assert code == 0, err
    code, _, err = await feed_worker("import", "--feed", str(feed_id), database_url=db_url)
    assert code == 3, err
    assert re.search(r"^run \d+ skipped: ", err, re.MULTILINE)
    assert re.search(r"^skipped: .* is unchanged \(HTTP 304\)$", err, re.MULTILINE)
    assert "error" not in err


def _paged_feed(feed_server: FeedServer, fail_page2_once: bool = False) -> str:
    """A paginated JSON API of two pages, 4 records; page 2 may answer 503 once."""
    filler = "x" * 3000  # each page a few KiB, sent in paced pieces: several frames
    page1 = {"items": [{"externalId": f"P{i}", "inventoryQuantity": i, "name": filler}
                       for i in range(1, 3)], "next": "/api/page2"}
    page2 = {"items": [{"externalId": f"P{i}", "inventoryQuantity": i, "name": filler}
                       for i in range(3, 5)], "next": None}
    feed_server.add("/api/page1", orjson.dumps(page1), content_type="application/json",
                    chunk=1024, pace_s=0.02)
    feed_server.add("/api/page2", orjson.dumps(page2), content_type="application/json",
                    chunk=1024, pace_s=0.02, status=503 if fail_page2_once else 200,
                    failures=1 if fail_page2_once else 0)
    return feed_server.url("/api/page1")


PAGED = {"record": "items", "next": "next"}


def _on_terminal(args: list[str], env: dict[str, str], timeout_s: float = 60.0
                 ) -> tuple[int, str]:
    """Run `python -m worker ARGS` with a pseudo-terminal as its stdin, stdout and stderr;
    its exit code and everything it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "worker", *args], stdin=slave,
                            stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{args} did not end within {timeout_s} s: {got[-3:]}")
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal's last descriptor
                break
            if not data:
                break
            got.append(data)
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), \
            b"".join(got).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


# 4. On a terminal: a bar with a total and percentage, pages, logs above it, ending at 100%.
async def test_on_a_terminal_the_bar_has_no_log_text_in_it_and_ends_at_100_percent(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    url = _paged_feed(feed_server, fail_page2_once=True)
    feed_id = await feeds.make_feed(pool, url, resource_type="json", mapping=PAGED)
    env = {**os.environ, "DATABASE_URL": db_url, "AMQP_URL": AMQP_URL,
           "FEED_WORKER_LOG_FORMAT": "auto", "FEED_WORKER_ALLOWED_NETWORKS": "127.0.0.1/32",
           "FEED_WORKER_RETRY_BASE_S": "0.05", "TERM": "xterm"}
    code, screen = await asyncio.to_thread(_on_terminal, ["import", "--feed", str(feed_id)],
                                           env)
    assert code == 0, screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # colours and cursor moves
    pieces = [p.strip() for p in re.split(r"[\r\n]", plain) if p.strip()]
    frames = [p for p in pieces if "rows_read=" in p and "|" in p]
    logs = [p for p in pieces if "run.retry" in p]
    assert frames, screen
    assert logs, screen  # page 2 answered 503 once: the retry was logged ...
    for frame in frames:  # ... above the bar, never inside a frame of it
        assert "run.retry" not in frame, frame
        assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", frame), frame
        assert "warning" not in frame, frame
    assert any("page 2" in f for f in frames), frames
    assert any(re.search(r"\b\d{1,2}%\|", f) for f in frames), frames  # a known total
    assert "100%|" in frames[-1], frames[-1]
    assert "rows_read=4" in frames[-1], frames[-1]
    assert re.search(r"run \d+ succeeded: rows_read=4 ", plain), plain


# 4. Off a terminal: plain lines whose counts are the run's; each failure printed once.
async def test_off_a_terminal_progress_counts_match_the_run_and_a_failure_is_printed_once(
        pool: asyncpg.Pool, db_url: str, feed_server: FeedServer) -> None:
    rows = b"".join(b"E%d,%d\n" % (i, i) for i in range(16)) + b"BAD,x\n"
    url = feed_server.add("/seventeen.csv", b"external_id,qty\n" + rows)
    feed_id = await feeds.make_feed(pool, url)
    code, _, err = await feed_worker("import", "--feed", str(feed_id), database_url=db_url)
    assert code == 0, err
    summary = re.search(r"run \d+ succeeded: rows_read=(\d+) .* bytes=(\d+)", err)
    assert summary is not None, err
    last = re.findall(r"^progress bytes=(\d+) total_bytes=(\d+) percent=(\d+) rows_read=(\d+)$",
                      err, re.MULTILINE)[-1]
    assert (last[0], last[1], last[2], last[3]) == (summary[2], summary[2], "100", "17")
    assert summary[1] == "17"

    paged = await feeds.make_feed(pool, _paged_feed(feed_server), resource_type="json",
                                  mapping=PAGED)
    code, _, err = await feed_worker("import", "--feed", str(paged), database_url=db_url)
    assert code == 0, err
    assert re.search(r"^progress bytes=\d+ total_bytes=\d+ percent=100 rows_read=4 page=2$",
                     err, re.MULTILINE), err

    broken = await feeds.make_feed(pool, feed_server.url("/gone.csv"))
    code, _, err = await feed_worker("import", "--feed", str(broken), database_url=db_url)
    assert code == 1
    assert err.count("HTTP 404") == 1, err
    assert re.search(r"^error: .*HTTP 404", err, re.MULTILINE), err
    assert '"event":"run.failed"' not in err


# 5. Help for every command, for someone who has not read the README.
async def test_every_command_explains_itself(db_url: str) -> None:
    for args, words in ((["run"], ["feed-update", "pull-request", "feeds that are due"]),
                        (["check"], ["Postgres", "RabbitMQ", "exit status: 0"]),
                        (["migrate"], ["Creates the database", "advisory lock"]),
                        (["publish", "pull"], ["cleanup circuit breaker", "exit status"]),
                        (["replay", "list"], ["--limit N", "at most N messages"])):
        code, out, err = await feed_worker(*args, "--help", database_url=db_url)
        assert code == 0, err
        for word in words:
            assert word in out, (args, word, out)
    code, out, _ = await feed_worker("--help", database_url=db_url)
    assert code == 0
    assert out.count("host-pid") == 2  # the default, and what it means: once each
    assert ".venv/bin/feed-worker" in out


# 6. The daemon logs the instructions the README says it logs.
async def test_the_daemon_logs_where_to_send_work(db_url: str,
                                                  processes: list[DaemonProcess]) -> None:
    assert "`daemon.send_work`" in README
    daemon = DaemonProcess(db_url, "instructions")
    processes.append(daemon)
    await daemon.start()
    event = await daemon.wait_event("daemon.send_work")
    assert "feed-worker publish update --feed ID" in event["push"]
    assert "feed-worker publish pull --feed ID" in event["pull"]
    for word in ("'inventory'", "'feed.update'", "'feed.pull'", "message_id", "mandatory",
                 "persistent", "application/json", "timestamp_in_ms"):
        assert word in event["publish_yourself"], word
    assert "feed_runs" in event["outcomes"]
    assert "replay list" in event["dead_letters"]


# 7. The README's items.json, and its contract for publishing yourself.
async def test_the_readme_items_and_publisher_contract_land_once(
        clean_broker: None, pool: asyncpg.Pool, db_url: str, settings: Settings,
        tmp_path: Path) -> None:
    await _readme_feeds(pool, "https://feeds.example/stock.csv")
    await pool.execute("UPDATE inventory_feeds SET automated_fetching = 'disabled'")
    items = tmp_path / "items.json"
    items.write_text(_readme_block("An `items.json`:", "json"))
    def update(external_id: str, quantity: int) -> bytes:
        return orjson.dumps({"feedId": 2, "variants": [{"externalId": external_id,
                                                        "inventoryQuantity": quantity}]})

    for word in ("`message_id`", "`mandatory`", "`timestamp_in_ms`", "persistent",
                 "`content_type: application/json`"):
        assert word in README[README.index("Or publish yourself."):], word
    async with broker.running_daemon(settings):
        code, _, err = await feed_worker("publish", "update", "--feed", "2", str(items),
                                         database_url=db_url)
        assert code == 0, err
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(C.EXCHANGE)
            # As the contract says; the second is a publisher's retry of the first (same
            # message_id, so applied once), the third shows that both were taken.
            for body, message_id in ((update("9", 5), "acme-0001"), (update("9", 6), "acme-0001"),
                                     (update("10", 1), "acme-0002")):
                await exchange.publish(
                    aio_pika.Message(body, content_type="application/json",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                     message_id=message_id,
                                     headers={C.HEADER_TIMESTAMP_MS: int(time.time() * 1000)}),
                    routing_key=C.ROUTING_UPDATE, mandatory=True)
            with pytest.raises(aio_pika.exceptions.DeliveryError):  # a typo is not dropped
                await exchange.publish(aio_pika.Message(update("9", 7)),
                                       routing_key="feed.updates", mandatory=True)

        async def landed() -> dict[str, Any] | None:
            got = await feeds.items(pool, 2)
            return got if {"1234", "1235", "9", "10"} <= set(got) else None

        got = await until(landed, what="the README's items and the hand-published one")
    assert got["1234"]["inventory_quantity"] == 10
    assert got["1235"]["inventory_quantity"] == 0
    assert got["9"]["inventory_quantity"] == 5  # the retry was a repeat, not applied again


# 8. Where `feed-worker` is after `make run` / `make test`.
async def test_feed_worker_is_in_the_virtual_environment_as_the_readme_says() -> None:
    script = Path(sys.executable).parent / "feed-worker"
    assert script.exists(), f"{script}: the venv has no feed-worker (pip install -e .)"
    assert "`.venv/bin/feed-worker`" in README
    assert "`. .venv/bin/activate`" in README
    proc = await asyncio.to_thread(subprocess.run, [str(script), "--version"],
                                   capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("feed-worker ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


# 9. Every dead letter counted, with a bounded reason; push group failures visible.
async def test_dead_letters_of_both_queues_are_counted_by_reason(
        clean_broker: None, pool: asyncpg.Pool, db_url: str,
        processes: list[DaemonProcess]) -> None:
    webhook = await feeds.make_feed(pool, None, resource_type="webhook")
    port = _free_port()
    daemon = DaemonProcess(db_url, "metrics", FEED_WORKER_HTTP_PORT=str(port),
                           FEED_WORKER_HTTP_HOST="127.0.0.1")
    processes.append(daemon)
    await daemon.start()
    await broker.publish(b"not json", C.ROUTING_PULL, "p1")
    await broker.publish(b'{"feedId": 424242}', C.ROUTING_PULL, "p2")
    await broker.publish(orjson.dumps({"feedId": webhook}), C.ROUTING_PULL, "p3")
    await broker.publish(b"not json", C.ROUTING_UPDATE, "u1")
    await broker.publish(orjson.dumps({"feedId": 424242, "variants": [{"externalId": "1"}]}),
                         C.ROUTING_UPDATE, "u2")
    pull, update = "inventory.pull-request", "inventory.feed-update"
    want = {
        ("feed_worker_dead_letters_total", (("queue", pull), ("reason", "not_json"))): 1.0,
        ("feed_worker_dead_letters_total", (("queue", pull), ("reason", "unknown_feed"))): 1.0,
        ("feed_worker_dead_letters_total", (("queue", pull), ("reason", "not_pullable"))): 1.0,
        ("feed_worker_dead_letters_total", (("queue", update), ("reason", "not_json"))): 1.0,
        ("feed_worker_dead_letters_total", (("queue", update), ("reason", "unknown_feed"))): 1.0,
        ("feed_worker_dead_letters_total", (("queue", pull), ("reason", "invalid"))): 0.0,
        ("feed_worker_messages_total", (("decision", "dead"), ("queue", pull))): 3.0,
        ("feed_worker_messages_total", (("decision", "dead"), ("queue", update))): 2.0,
        ("feed_worker_push_group_failures_total", (("kind", "permanent"),)): 0.0,
        ("feed_worker_push_group_failures_total", (("kind", "unavailable"),)): 0.0,
    }

    async def counted() -> dict[Any, float] | None:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            got = _samples(await resp.text())
        return got if all(got.get(k) == v for k, v in want.items()) else None

    got = await until(counted, timeout_s=20, every_s=0.2, what="the dead letters counted")
    reasons = {dict(labels)["reason"] for (name, labels) in got
               if name == "feed_worker_dead_letters_total"}
    assert reasons == {"not_json", "invalid", "unknown_feed", "feed_disabled", "not_pullable",
                       "feed_settings", "refused_by_database"}
    assert await broker.queue_depth(C.QUEUE_DEAD_LETTER) == 5
