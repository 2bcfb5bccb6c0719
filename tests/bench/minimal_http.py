"""The HTTP limit of this machine for the API benchmark: a minimal aiohttp app that only
reads the request body, parses it as JSON (orjson) and answers 200 with a small JSON body.

`python -m tests.bench.minimal_http`: listens on 127.0.0.1, a free port, printed as the
JSON line {"event": "minimal.started", "port": N} once it listens; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal

import orjson
from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    data = orjson.loads(await request.read())
    n = len(data) if isinstance(data, list) else 1
    return web.Response(body=orjson.dumps({"ok": True, "variants": n}),
                        content_type="application/json")


async def main() -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(orjson.dumps({"event": "minimal.started", "port": port}).decode(), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
