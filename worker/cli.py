"""Command line: parses arguments and calls into the package; nothing imports it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import timedelta

from worker import __version__, commands, logs
from worker.deadletters import parse_duration
from worker.errors import ConfigError, WorkerError
from worker.settings import Settings, describe


def _env_help() -> str:
    lines = ["environment (default):"]
    for name, default, text in describe():
        lines.append(f"  {name:38} {text} ({default})")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feed-worker",
        description="Keeps a marketplace's copy of its suppliers' inventory feeds current.",
        epilog=_env_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"feed-worker {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the daemon (consumes pull-requests)"
                   ).set_defaults(handler=commands.run)
    sub.add_parser("api", help="serve the HTTP API (FEED_WORKER_API_PORT)"
                   ).set_defaults(handler=commands.api)
    tok = sub.add_parser("token", help="API bearer tokens")
    tok_sub = tok.add_subparsers(dest="what", required=True, metavar="WHAT")
    tc = tok_sub.add_parser("create", help="create a token and print it (shown only once)")
    tc.set_defaults(handler=commands.token_create)
    who = tc.add_mutually_exclusive_group(required=True)
    who.add_argument("--provider", type=int, metavar="N",
                     help="a token of dropship provider N: its own feeds and items only")
    who.add_argument("--admin", action="store_true", help="a token that sees every provider")
    tr = tok_sub.add_parser("revoke", help="revoke a token: it answers 401 from now on")
    tr.set_defaults(handler=commands.token_revoke)
    tr.add_argument("id", type=int, help="the token's id (fwt_<id>_...)")
    sub.add_parser("check", help="exit 0 when Postgres and RabbitMQ answer (for probes)"
                   ).set_defaults(handler=commands.check)
    sub.add_parser("migrate", help="create the database if missing and apply migrations"
                   ).set_defaults(handler=commands.migrate)
    imp = sub.add_parser("import", help="pull one feed now, without the broker")
    imp.set_defaults(handler=commands.import_feed)
    imp.add_argument("--feed", type=int, required=True, help="inventory_feeds.id")
    imp.add_argument("--url", help="read this URL instead of the feed's resource_location")
    imp.add_argument("--dry-run", action="store_true",
                     help="read and check everything, report what would change, change nothing")
    imp.add_argument("--force", action="store_true",
                     help="apply what the cleanup circuit breaker would hold")
    pub = sub.add_parser("publish", help="send messages, with publisher confirms")
    pub_sub = pub.add_subparsers(dest="what", required=True, metavar="WHAT")
    pp = pub_sub.add_parser("pull", help="a pull-request for one feed")
    pp.set_defaults(handler=commands.publish_pull)
    pp.add_argument("--feed", type=int, required=True, help="inventory_feeds.id")
    pp.add_argument("--force", action="store_true", help="apply even where a check would hold")
    pu = pub_sub.add_parser("update", help="variants of one feed, in messages of 50")
    pu.set_defaults(handler=commands.publish_update)
    pu.add_argument("--feed", type=int, required=True, help="inventory_feeds.id")
    pu.add_argument("file", metavar="FILE", help="a JSON array of variants; - reads stdin")
    pu.add_argument("--batch", type=int, default=50, help="variants per message (50)")
    ph = pub_sub.add_parser("held", help="the items a run held back by the daily SKU limit")
    ph.set_defaults(handler=commands.publish_held)
    ph.add_argument("--run", type=int, required=True, help="feed_runs.id")
    rp = sub.add_parser("replay", help="inspect and requeue dead-lettered messages")
    rp_sub = rp.add_subparsers(dest="what", required=True, metavar="WHAT")
    rl = rp_sub.add_parser(
        "list", help="show dead-lettered messages (they stay queued, in their order)",
        description="One line per message in inventory.dead-letter: message id, original "
                    "routing key, when it was dead-lettered, the reason, the start of the "
                    "body. Nothing is taken off the queue.")
    rl.set_defaults(handler=commands.replay_list)
    _replay_filters(rl, default_limit=50)
    rq = rp_sub.add_parser(
        "requeue", help="publish them again with their routing key, and report the outcomes",
        description="Publishes the selected dead-lettered messages again to the inventory "
                    "exchange with their original routing key. Each is removed from "
                    "inventory.dead-letter only once the broker confirmed it. They keep their "
                    "order times, so an update older than the stored item is skipped as "
                    "stale. Then waits for the daemon to record what each came to and "
                    "prints one line per message and a summary.",
        epilog="exit status: 0 when every message sent was applied, found stale, rejected "
               "or a repeat (or, with --no-wait, was sent); 1 when one was dead-lettered "
               "again, had no outcome by the deadline (pending), could not be sent, or an "
               "id given with --message-id was not found.")
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
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"feed-worker: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    try:
        handler: commands.Handler = args.handler
        return asyncio.run(handler(args, settings))
    except OSError as exc:
        print(f"feed-worker {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except WorkerError as exc:
        print(f"feed-worker {args.command}: {exc}", file=sys.stderr)
        return 1
