"""The websocket credential sweep with N desktops connected: a sweep when nothing changed,
against the full check measured in the same run (what every sweep did before issue #19's
change, and what a sweep still does after a credential changed: cti/web/ws.py).

Starts the web application (``create_app``) on 127.0.0.1 with a hub whose own sweeper is
off, creates N API tokens and connects N real websocket clients (this process, aiohttp),
then times ``--rounds`` of each, alternating:

- nothing changed: ``hub.sweep()`` with the change marker as it was;
- full check (the same-run baseline): a spare token no websocket uses is revoked (not
  timed), which moves the marker, then ``hub.sweep()`` checks every connection's
  credential again;
- before: what every sweep did before the marker, as it did it (the query over every
  connection's token through ``Database.session``, on the event loop: a copy of the
  former ``live_tokens``).

Prints the median wall time and main-thread CPU time of a sweep of each kind, and the SQL
statements each sent. PostgreSQL: a scratch database on the local server
(CTI_TEST_PG_ADMIN_URL, default postgresql://postgres@127.0.0.1:5432/postgres), dropped
afterwards.

    .venv/bin/python bench/ws_sweep.py [--desktops 500] [--rounds 40] [--store sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from scratch_pg import scratch_postgres  # bench/ helper
from sqlalchemy import event, or_, select

from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import ApiToken, utcnow
from cti.store.tokens import create_token, revoke_token_id, verify_token
from cti.web.app import WebDeps, create_app
from cti.web.ws import WsHub

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests.local_http
    sys.path.insert(0, str(ROOT))


async def timed(sweep: Callable[[], Awaitable[int]]) -> tuple[float, float]:
    """(wall ms, main-thread CPU ms) of one sweep."""
    wall, cpu = time.perf_counter(), time.thread_time()
    await sweep()
    return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000


async def sweep_before(db: Database, ids: set[int]) -> int:
    """The former sweep's query (``live_tokens`` before the change marker), unchanged."""
    now = utcnow()
    async with db.session() as session:
        rows = await session.scalars(
            select(ApiToken.id).where(
                ApiToken.id.in_(ids),
                ApiToken.revoked_at.is_(None),
                or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
            )
        )
        return len(set(rows.all()))


async def measure(url: str, desktops: int, rounds: int) -> dict[str, Any]:
    from tests.local_http import NoCalls, serving  # the tests' way to serve the app

    await asyncio.to_thread(upgrade, url)
    db = Database.from_url(url)
    await db.warm()
    statements: list[str] = []

    def record(_c: Any, _cursor: Any, sql: str, *_: Any) -> None:
        statements.append(sql)

    for engine in {db.engine.sync_engine, db.reader.sync_engine, db.read_engine}:
        event.listen(engine, "before_cursor_execute", record)
    hub = WsHub(db, sweep_s=24 * 3600, heartbeat_s=3600)
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=hub))
    tokens = [await create_token(db, f"desk{i}", "agent") for i in range(desktops)]
    spare = []
    for i in range(rounds):
        principal = await verify_token(db, await create_token(db, f"spare{i}", "agent"))
        assert principal is not None and principal.token_id is not None
        spare.append(principal.token_id)
    try:
        async with (
            serving(app) as base,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        ):
            sockets = []
            for token in tokens:
                ws = await http.ws_connect(
                    f"{base}/ws", headers={"Authorization": f"Bearer {token}"}
                )
                await ws.receive(timeout=10)  # hello
                sockets.append(ws)
            await hub.sweep()  # the first sweep checks every (new) connection
            quiet: list[tuple[float, float]] = []
            full: list[tuple[float, float]] = []
            before: list[tuple[float, float]] = []
            ids = {c.principal.token_id or 0 for c in hub.connections}
            quiet_sql = full_sql = 0
            for token_id in spare:
                statements.clear()
                quiet.append(await timed(hub.sweep))
                quiet_sql = len(statements)
                await revoke_token_id(db, token_id)
                statements.clear()
                full.append(await timed(hub.sweep))
                full_sql = len(statements)
                before.append(await timed(lambda: sweep_before(db, ids)))
            assert len(hub.connections) == desktops, "a desktop was closed"
            for ws in sockets:
                await ws.close()
    finally:
        await hub.close_all()
        await db.dispose()
    return {
        "quiet_ms": statistics.median(w for w, _ in quiet),
        "quiet_cpu_ms": statistics.median(c for _, c in quiet),
        "full_ms": statistics.median(w for w, _ in full),
        "full_cpu_ms": statistics.median(c for _, c in full),
        "before_ms": statistics.median(w for w, _ in before),
        "before_cpu_ms": statistics.median(c for _, c in before),
        "quiet_sql": quiet_sql,
        "full_sql": full_sql,
    }


async def run(args: argparse.Namespace) -> None:
    if args.store == "postgres":
        async with scratch_postgres() as url:
            r = await measure(url, args.desktops, args.rounds)
    else:
        with tempfile.TemporaryDirectory(prefix="cti-ws-sweep-") as tmp:
            r = await measure(f"sqlite+aiosqlite:///{Path(tmp) / 'cti.db'}", args.desktops,
                              args.rounds)  # fmt: skip
    what = f"{args.desktops} connections, {args.store}"
    print(f"ws sweep, nothing changed ({what}): {r['quiet_ms']:.2f} ms")
    print(f"ws sweep, full check, the same-run baseline ({what}): {r['full_ms']:.2f} ms")
    print(f"ws sweep before the change marker, the same-run baseline ({what}): "
          f"{r['before_ms']:.2f} ms")  # fmt: skip
    print(f"ws sweep main-thread CPU, nothing changed ({what}): {r['quiet_cpu_ms']:.2f} ms")
    print(f"ws sweep main-thread CPU, full check ({what}): {r['full_cpu_ms']:.2f} ms")
    print(f"ws sweep main-thread CPU, before the change marker ({what}): "
          f"{r['before_cpu_ms']:.2f} ms")  # fmt: skip
    print(f"ws sweep statements, nothing changed ({what}): {r['quiet_sql']} statements")
    print(f"ws sweep statements, full check ({what}): {r['full_sql']} statements")
    print(f"ws sweep wall ratio, before / nothing changed ({what}): "
          f"{r['before_ms'] / r['quiet_ms']:.1f} x")  # fmt: skip
    print(f"ws sweep main-thread CPU ratio, before / nothing changed ({what}): "
          f"{r['before_cpu_ms'] / max(r['quiet_cpu_ms'], 1e-3):.1f} x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--desktops", type=int, default=500, help="connected websockets")
    parser.add_argument("--rounds", type=int, default=40, help="sweeps of each kind")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
