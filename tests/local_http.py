"""A test's own HTTP server on 127.0.0.1 (a webhook receiver, an external CRM, a hostile
page, the product's web application without a daemon): the one way the tests serve an
aiohttp application of their own, and what the web application needs served so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 on a port the kernel picks; yields its base URL
    (``http://127.0.0.1:<port>``) and stops it on exit."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class NoCalls:
    """The web application's live calls when it is served without a daemon: none."""

    def live_calls(self) -> list[dict[str, object]]:
        return []

    def health(self) -> dict[str, object]:
        return {"ok": True}


#: a password the accounts accept, and argon2 costs that hash it in a millisecond
PW = "correct horse battery"
FAST = dict(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
