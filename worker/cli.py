"""Command line: parses arguments and calls into the package (commands.execute); nothing
imports it but tests, which compare its help with the README."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from worker import __version__, commands
from worker.deadletters import parse_duration
from worker.settings import describe

EXIT_CODES = ("exit status: 0 done; 1 tried and failed; 2 could not start (a wrong argument, "
              "input or setting, a feed that cannot take the work, Postgres or RabbitMQ not "
              "answering). Problems are printed once, one line each: "
              "'feed-worker COMMAND: error: ...'.")


def _env_help() -> str:
    lines = ["commands: feed-worker COMMAND --help says what each does and takes.",
             "",
             "Installed by `make run` or `make test` in .venv: call .venv/bin/feed-worker,",
             "or `. .venv/bin/activate` first.",
             "",
             "environment (default):"]
    for name, default, text in describe():
        lines.append(f"  {name} ({default or 'empty'})")
        lines.extend(textwrap.wrap(text, 90, initial_indent="      ",
                                   subsequent_indent="      "))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feed-worker",
        description=textwrap.fill(
            "Keeps a marketplace's copy of its suppliers' inventory feeds current in Postgres: "
            "pulls feed files (CSV, XML, JSON over HTTP(S), FTP(S), SFTP) and applies pushed "
            "updates from RabbitMQ. Start with `feed-worker migrate`, then `feed-worker run`; "
            "send work with `feed-worker publish` or `feed-worker import`.", 79),
        epilog=_env_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"feed-worker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(parent: Any, name: str, help: str, description: str,
                epilog: str = EXIT_CODES) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help,
                                                       description=description, epilog=epilog)
        return p

    command(sub, "run", "the daemon: pulls, pushes, the scheduler, health and metrics",
            "The daemon. Declares the broker topology (exchange 'inventory', the queues "
            "inventory.pull-request, inventory.feed-update and inventory.dead-letter), then "
            "runs the pulls that pull-requests ask for (FEED_WORKER_PULL_CONCURRENCY at once), "
            "applies feed-update messages in micro-batches, publishes pull-requests for feeds "
            "that are due (FEED_WORKER_SCHEDULER: a new feed is due at once), and serves "
            "/healthz, /readyz and /metrics on FEED_WORKER_HTTP_PORT. Logs JSON lines on "
            "stderr (console on a terminal); it logs where to send work when it starts. "
            "SIGTERM or Ctrl-C stops it gracefully. Reads DATABASE_URL and AMQP_URL.",
            "exit status: 0 after a graceful stop; 1 when a background task died; 2 when it "
            "could not start (Postgres or RabbitMQ not answering, a wrong setting)."
            ).set_defaults(handler=commands.run)
    command(sub, "api", "serve the HTTP API (FEED_WORKER_API_PORT)",
            "The HTTP API: dropship providers, inventory feeds, their items, parse-webhook "
            "pushes (one applied at once, up to 50 queued for the daemon), runs and rejects, "
            "on FEED_WORKER_API_PORT, with /healthz, /readyz, /metrics and /api/openapi.json. "
            "Stateless: run as many replicas as you like. Callers need a token (`feed-worker "
            "token create`). SIGTERM or Ctrl-C stops it. Reads DATABASE_URL and AMQP_URL.",
            "exit status: 0 after a stop; 2 when it could not start (Postgres or RabbitMQ "
            "not answering, a wrong setting)."
            ).set_defaults(handler=commands.api)
    tok = sub.add_parser("token", help="create or revoke HTTP API bearer tokens",
                         description="Bearer tokens of the HTTP API (`feed-worker api`), "
                                     "stored as SHA-256 digests. Reads DATABASE_URL.")
    tok_sub = tok.add_subparsers(dest="what", required=True, metavar="WHAT")
    tc = command(tok_sub, "create", "create a token and print it (it is shown only once)",
                 "Creates a token for one dropship provider (its own feeds and items only) "
                 "or an admin (every provider), and prints it: fwt_<id>_<secret>.",
                 "exit status: 0 created; 2 the provider does not exist or Postgres does not "
                 "answer.")
    tc.set_defaults(handler=commands.token_create)
    who = tc.add_mutually_exclusive_group(required=True)
    who.add_argument("--provider", type=int, metavar="N",
                     help="a token of dropship provider N: its own feeds and items only")
    who.add_argument("--admin", action="store_true", help="a token that sees every provider")
    tr = command(tok_sub, "revoke", "revoke a token: it answers 401 from then on",
                 "Revokes token ID (the number in fwt_<id>_...): the HTTP API answers it 401 "
                 "from then on (within FEED_WORKER_API_CACHE_S on a replica that had just "
                 "seen it). Reads DATABASE_URL.",
                 "exit status: 0 revoked; 2 there was no live token of that id, or Postgres "
                 "does not answer.")
    tr.set_defaults(handler=commands.token_revoke)
    tr.add_argument("id", type=int, help="the token's id (fwt_<id>_...)")
    command(sub, "check", "exit 0 when Postgres and RabbitMQ answer, 1 otherwise (for probes)",
            "Connects to Postgres (DATABASE_URL) and RabbitMQ (AMQP_URL) once each, with a "
            "timeout of 5 s, and prints one line per service that does not answer. For "
            "liveness and readiness probes.",
            "exit status: 0 when both answer; 1 otherwise; 2 for a wrong setting."
            ).set_defaults(handler=commands.check)
    command(sub, "migrate", "create the database if missing and apply the migrations",
            "Creates the database DATABASE_URL names when it does not exist, then applies "
            "the numbered migrations (schemas/sql/NNNN_*.sql) not yet applied, in order, each "
            "once, under an advisory lock: replicas that start together may all run it. "
            "Prints the migrations it applied."
            ).set_defaults(handler=commands.migrate)

    imp = command(sub, "import", "pull one feed now, here, without the broker",
                  "Pulls one feed in this process, as the daemon would (same checks, same "
                  "rules, a run recorded in feed_runs), without RabbitMQ. Shows a progress "
                  "bar on a terminal (bytes with a total and percentage when the size is "
                  "known, the page of a paginated API, records read; log lines above it), "
                  "plain 'progress' lines otherwise, and a summary with the run's counts. "
                  "Reads DATABASE_URL.",
                  "exit status: 0 the run succeeded (or the dry run ended); 1 it failed or "
                  "was held by the cleanup circuit breaker; 2 no run could start (unknown, "
                  "disabled or webhook feed, no URL, a pull of the feed already running, "
                  "Postgres not answering); 3 skipped: the file was unchanged since the last "
                  "pull (the feed's cache_imports), not read.")
    imp.set_defaults(handler=commands.import_feed)
    imp.add_argument("--feed", type=int, required=True, metavar="N",
                     help="the feed to pull: inventory_feeds.id")
    imp.add_argument("--url", help="read this URL instead of the feed's resource_location "
                                   "(also a local file:///path)")
    imp.add_argument("--dry-run", action="store_true",
                     help="read and check everything and print what the run would insert, "
                          "update, leave, zero and connect, and which circuit breaker rules "
                          "would hold it; then roll back: nothing changes, no run is recorded")
    imp.add_argument("--force", action="store_true",
                     help="apply the pull even when the cleanup circuit breaker would hold it "
                          "(it would zero too many items or too much stock, or the file is "
                          "much smaller than the last one)")


    pv = command(sub, "preview", "show how a feed's mapping maps the head of its file",
                 "Downloads only the head of the feed's file (it stops at the N-th record, or "
                 "after 16 MiB of document without them, and closes the download), maps it as a "
                 "pull would, the value rules applied, and writes nothing, not even a run. "
                 "Prints the format, compression, encoding, delimiter and header (XML, JSON: "
                 "the record path), the records as a table (values cut to 20 characters; a "
                 "rejected record with its reason), and per mapped attribute its source and "
                 "how many sampled records had a value. A disabled feed may be previewed. "
                 "Reads DATABASE_URL.",
                 "exit status: 0 the mapping works on the sample; 1 it cannot (no externalId, "
                 "a mapped column missing from the header, a path of the feed's fields that "
                 "matched no sampled record, no records at the record path, every sampled "
                 "record rejected): each problem one line on stderr; 2 the feed cannot be read "
                 "(unknown or webhook feed, no or a bad URL, the download failed, Postgres not "
                 "answering).")
    pv.set_defaults(handler=commands.preview)
    pv.add_argument("--feed", type=int, required=True, metavar="N",
                    help="the feed to preview: inventory_feeds.id")
    pv.add_argument("--url", help="read this URL instead of the feed's resource_location "
                                  "(also a local file:///path)")
    pv.add_argument("--rows", type=int, default=20, metavar="N",
                    help="records to read and show (default 20; at most 1000)")

    pub = sub.add_parser("publish", help="send pull-requests or feed-updates to the daemon",
                         description="Publishes messages to the 'inventory' exchange with "
                                     "publisher confirms and 'mandatory', after checking the "
                                     "feed (DATABASE_URL) as the daemon would. Reads AMQP_URL.")
    pub_sub = pub.add_subparsers(dest="what", required=True, metavar="WHAT")
    pp = command(pub_sub, "pull", "ask the daemon to pull one feed",
                 "Publishes one pull-request ({\"feedId\": N}) to the 'inventory' exchange "
                 "with routing key 'feed.pull', persistent, with a fresh message_id, and waits "
                 "for the broker's confirm. A running daemon pulls the feed; read the outcome "
                 "in feed_runs. The feed is checked first: it must exist, be enabled, of a "
                 "provider not archived, and pulled (resource_type ftp_csv, spreadsheet, xml "
                 "or json). "
                 "Prints the message_id.",
                 "exit status: 0 confirmed; 1 the broker did not confirm or could not route it "
                 "(start `feed-worker run` once to declare the queues); 2 the feed cannot be "
                 "pulled, or Postgres or RabbitMQ does not answer.")
    pp.set_defaults(handler=commands.publish_pull)
    pp.add_argument("--feed", type=int, required=True, metavar="N",
                    help="the feed to pull: inventory_feeds.id")
    pp.add_argument("--force", action="store_true",
                    help="apply the pull even when the cleanup circuit breaker would hold it "
                         "(the pull-request carries \"force\": true)")
    pu = command(pub_sub, "update", "send item updates of one feed (a JSON array of variants)",
                 "Reads a JSON array of variants ({\"externalId\": \"1234\", "
                 "\"inventoryQuantity\": 10, ...}, see schemas/feed-update.schema.json) and "
                 "publishes them as feed-update messages to the 'inventory' exchange with "
                 "routing key 'feed.update': --batch variants a message, each persistent, "
                 "with a fresh message_id (the daemon applies an id once) and a "
                 "timestamp_in_ms header (the order of updates to one item), 'mandatory', "
                 "confirmed. The feed is checked first: it must exist, be enabled, of a "
                 "provider not archived, and a push feed (resource_type webhook) unless "
                 "--to-pulled-feed.",
                 "exit status: 0 every message confirmed; 1 the broker did not confirm or "
                 "could not route one (start `feed-worker run` once to declare the queues); "
                 "2 the file is not a JSON array, the feed cannot take updates, or Postgres or "
                 "RabbitMQ does not answer.")
    pu.set_defaults(handler=commands.publish_update)
    pu.add_argument("--feed", type=int, required=True, metavar="N",
                    help="the feed the variants belong to: inventory_feeds.id")
    pu.add_argument("file", metavar="FILE",
                    help="a JSON array of variants; - reads it from stdin")
    pu.add_argument("--batch", type=int, default=50, metavar="N",
                    help="variants per message (default 50; the daemon takes at most 10,000 "
                         "in one)")
    pu.add_argument("--to-pulled-feed", action="store_true",
                    help="also to a feed that is pulled (ftp_csv, spreadsheet, xml, json); its "
                         "next pull sets the items back to what its file says")
    ph = command(pub_sub, "held", "apply what a run held back by the daily SKU limit",
                 "Publishes the items run N held back by its provider's daily SKU limit "
                 "(its 'daily limit' rejects) as feed-update messages to the run's feed, "
                 "confirmed. Run it on a later day: they meet the limit again.",
                 "exit status: 0 every message confirmed; 1 the broker did not confirm one; "
                 "2 the run does not exist or held nothing back, or Postgres or RabbitMQ does "
                 "not answer.")
    ph.set_defaults(handler=commands.publish_held)
    ph.add_argument("--run", type=int, required=True, metavar="N", help="feed_runs.id")

    rp = sub.add_parser("replay", help="inspect and requeue dead-lettered messages",
                        description="Messages the daemon could not take (not JSON, against "
                                    "the schema, an unknown or disabled feed, refused by the "
                                    "database) wait in the queue inventory.dead-letter with "
                                    "their reason. Reads AMQP_URL.")
    rp_sub = rp.add_subparsers(dest="what", required=True, metavar="WHAT")
    rl = command(rp_sub, "list", "show dead-lettered messages (they stay queued, in their order)",
                 "One line per message in inventory.dead-letter: message id, original routing "
                 "key, when it was dead-lettered, the reason, the start of the body. Nothing "
                 "is taken off the queue.",
                 "exit status: 0 listed; 2 RabbitMQ does not answer or the queue is not "
                 "declared.")
    rl.set_defaults(handler=commands.replay_list)
    _replay_filters(rl, default_limit=50)
    rq = command(
        rp_sub, "requeue", "publish them again with their routing key, and report the outcomes",
        "Publishes the selected dead-lettered messages again to the inventory exchange with "
        "their original routing key. Each is removed from inventory.dead-letter only once "
        "the broker confirmed it. They keep their order times, so an update older than the "
        "stored item is skipped as stale. Then waits for the daemon to record what each "
        "came to and prints one line per message and a summary.",
        "exit status: 0 when every message sent was applied, found stale, rejected or a "
        "repeat (or, with --no-wait, was sent); 1 when one was dead-lettered again, had no "
        "outcome by the deadline (pending), could not be sent, or an id given with "
        "--message-id was not found; 2 RabbitMQ or (waiting) Postgres does not answer.")
    rq.set_defaults(handler=commands.replay_requeue)
    _replay_filters(rq, default_limit=None)
    rq.add_argument("--dry-run", action="store_true",
                    help="print what would be sent, one line per message (marking updates "
                         "with no order time, which would count as new); send nothing and "
                         "leave the queue exactly as it was")
    wait = rq.add_mutually_exclusive_group()
    wait.add_argument("--wait", type=_seconds, default=60.0, metavar="SECONDS",
                      help="how long to wait for the daemon to record the outcomes of the "
                           "messages sent (default 60); reads DATABASE_URL")
    wait.add_argument("--no-wait", action="store_true",
                      help="do not wait for outcomes (DATABASE_URL is not needed)")
    return parser


def _replay_filters(parser: argparse.ArgumentParser, default_limit: int | None) -> None:
    parser.add_argument(
        "--message-id", nargs="+", action="extend", dest="ids", metavar="ID",
        help="only the messages with these ids (several after one flag, or the flag "
             "repeated); default: all")
    parser.add_argument(
        "--reason", metavar="TEXT",
        help="only messages whose reason, as `replay list` shows it, contains TEXT, ignoring "
             "case: the worker's error (e.g. 'is disabled'), or 'broker: <why>' for a message "
             "the broker dead-lettered itself (e.g. 'broker: delivery_limit')")
    parser.add_argument("--feed", type=int, metavar="N",
                        help="only messages whose JSON body has feedId N (inventory_feeds.id); "
                             "a body that is not JSON never matches")
    parser.add_argument(
        "--older-than", type=_duration, metavar="DURATION",
        help="only messages dead-lettered longer ago than DURATION: a number and s, m, h or "
             "d (90s, 30m, 2h, 7d); one that does not say when it was dead-lettered is left out")
    parser.add_argument(
        "--limit", type=int, default=default_limit, metavar="N",
        help="at most N messages, the first in the queue that match" + (
            f" (default {default_limit})" if default_limit else " (default: all)"))


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    return commands.execute(build_parser().parse_args(argv))
