"""The subcommands of `feed-worker`: each takes the parsed arguments and the settings,
prints what the user sees and returns the exit code. cli.py registers them with
`set_defaults(handler=...)` and calls `execute`.

Exit codes, for every command: 0 done; 1 tried and failed (a run failed or was held, the
broker did not take a message, a replayed message did not come to an outcome); 2 could not
start (the command line, the input or the environment is wrong, the feed cannot take the
work, Postgres or RabbitMQ does not answer); `import` also 3 (skipped: unchanged file).
A problem is printed once, as one line `feed-worker COMMAND: error: TEXT` on stderr.

Each imports its module when it runs: `feed-worker --help` or `check` should not pay for
the daemon's imports.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from worker import logs
from worker.deadletters import Selection
from worker.errors import ConfigError, Unavailable, WorkerError
from worker.settings import Settings

# Called before the event loop starts; asyncio.run runs the coroutine it returns.
Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]

EXIT_FAILED = 1
EXIT_NOT_STARTED = 2


def execute(args: argparse.Namespace) -> int:
    """Run the command the arguments name; its exit code."""
    name = " ".join(str(p) for p in (args.command, getattr(args, "what", None)) if p)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return _problem(name, exc, EXIT_NOT_STARTED)
    logs.configure(settings.log_level, settings.log_format)
    try:
        handler: Handler = args.handler
        return asyncio.run(handler(args, settings))
    except (ConfigError, Unavailable, OSError) as exc:
        return _problem(name, exc, EXIT_NOT_STARTED)
    except KeyboardInterrupt:
        return 130
    except WorkerError as exc:
        return _problem(name, exc, EXIT_FAILED)


def _problem(command: str, exc: BaseException, code: int) -> int:
    text = str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
    print(f"feed-worker {command}: error: {text}", file=sys.stderr)
    return code


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from worker.daemon import Daemon

    return await Daemon(settings).run()


async def api(args: argparse.Namespace, settings: Settings) -> int:
    from worker.api.app import serve

    return await serve(settings)


async def token_create(args: argparse.Namespace, settings: Settings) -> int:
    from worker.admin import create_token

    print(await create_token(settings, None if args.admin else args.provider))
    return 0


async def token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from worker.admin import revoke_token

    if not await revoke_token(settings, args.id):
        raise ConfigError(f"no live token {args.id}")
    print(f"revoked token {args.id}")
    return 0


async def check(args: argparse.Namespace, settings: Settings) -> int:
    from worker.admin import check

    problems = await check(settings)
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


async def migrate(args: argparse.Namespace, settings: Settings) -> int:
    from worker.admin import run_migrations

    applied = await run_migrations(settings)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied
                                                    else "; the schema is current"))
    return 0


async def import_feed(args: argparse.Namespace, settings: Settings) -> int:
    from worker.oneshot import run_import

    return await run_import(settings, args.feed, args.url, dry_run=args.dry_run,
                            force=args.force)


async def preview(args: argparse.Namespace, settings: Settings) -> int:
    from worker.preview import run_preview

    return await run_preview(settings, args.feed, args.url, args.rows)


async def publish_pull(args: argparse.Namespace, settings: Settings) -> int:
    from worker.publish import check_feed, publish_pull

    await check_feed(settings, args.feed, "pull")
    message_id = await publish_pull(settings, args.feed, args.force)
    print(f"published pull-request for feed {args.feed} (message_id {message_id})")
    return 0


def publish_update(args: argparse.Namespace, settings: Settings) -> Coroutine[Any, Any, int]:
    """Reads the variants before the event loop starts (Ctrl-C while stdin is read stops
    at once), then returns the coroutine that sends them."""
    from worker.publish import check_feed, publish_update, read_variants

    variants = read_variants(sys.stdin if args.file == "-" else Path(args.file).read_bytes())

    async def send() -> int:
        await check_feed(settings, args.feed, "update", args.to_pulled_feed)
        ids = await publish_update(settings, args.feed, variants, max(1, args.batch))
        print(f"published {len(variants)} variant(s) of feed {args.feed} in {len(ids)} "
              f"message(s), all confirmed")
        return 0

    return send()


async def publish_held(args: argparse.Namespace, settings: Settings) -> int:
    from worker.publish import publish_held

    feed_id, count, ids = await publish_held(settings, args.run)
    print(f"published {count} held variant(s) of run {args.run} to feed {feed_id} in "
          f"{len(ids)} message(s), all confirmed")
    return 0


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(frozenset(args.ids) if args.ids else None, args.reason, args.feed,
                     args.older_than)


async def replay_list(args: argparse.Namespace, settings: Settings) -> int:
    from worker import replay

    return await replay.list_command(settings, _selection(args), args.limit, sys.stdout)


async def replay_requeue(args: argparse.Namespace, settings: Settings) -> int:
    from worker import replay

    return await replay.requeue_command(
        settings, _selection(args), args.limit, dry_run=args.dry_run,
        wait_s=None if args.no_wait else args.wait, out=sys.stdout, err=sys.stderr)
