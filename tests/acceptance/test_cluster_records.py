"""Issue #18: a node reads its Asterisk server's queue_log and CDR from the store, not from
files (``[asterisk] records = "postgresql"``, decision 0029).

Asterisk runs in a network namespace of its own (another host, as in
test_cluster_remote.py) and writes its records with its own modules (realtime queue_log
through res_config_pgsql, cdr_pgsql) into the machine's PostgreSQL, which it reaches over
the veth through a forwarder on this host's end. The node (``cti run``) has no access to
Asterisk's log directory: its ``asterisk.log_dir`` names a directory that does not exist.

- a call while the node runs; then two calls through the IVR into the queue (one
  answered, one waiting behind it), both in progress when the node is SIGKILLed, both
  ending while it is down (the second abandoned); the node, restarted, recovers them
  from the tables;
- afterwards every call of Asterisk's CDR file has exactly one call row, as the records
  say; the tables hold every queue_log line and CDR of the file, under the server's
  name; the hourly statistics equal a computation over the queue_log file alone;
- PostgreSQL unreachable for Asterisk (the forwarder cut) while a call ends: Asterisk
  keeps its file (and the call), that call's CDR and queue_log lines are missing from the
  tables, and the rows of the next call are written again once PostgreSQL is back;
  ``cti records backfill`` (run where the files are) puts the missing ones back, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from cti.ami.client import AmiClient
from cti.asterisk.instance import InstanceSpec
from cti.asterisk.rootfs import ensure_root
from cti.records.asterisk_conf import RecordsDb
from cti.records.backfill import BackfillResult, backfill
from cti.records.files import FileRecords
from cti.store.db import Database
from cti.store.migrate import upgrade
from cti.store.models import Call as CallRow
from cti.store.tokens import create_token
from tests.acceptance.harness import free_port, wait_for
from tests.acceptance.proxy import CuttableProxy
from tests.acceptance.test_call_truth import row_problems
from tests.acceptance.test_cluster_partition import Namespace
from tests.acceptance.test_cluster_remote import MENUS, NetnsAsterisk
from tests.acceptance.traffic import DaemonProcess, QueueLog, Truth, read_truth
from tests.checkout import checkout_env
from tests.cluster_services import queue_with_agents
from tests.conftest import PG_ADMIN_URL

pytestmark = [pytest.mark.postgres, pytest.mark.filterwarnings("ignore::ResourceWarning")]

# a /30 of its own (test_cluster_remote.py uses 10.199.19.0/30)
HOST_IP, AST_IP = "10.199.29.1", "10.199.29.2"
DNIS = "4008001234"
AGENT, EXT = "rec-ag1", "3401"


class Forwarder(CuttableProxy):
    """PostgreSQL as Asterisk's host reaches it: this host's veth address, forwarded to
    the machine's PostgreSQL; ``cut()`` makes it unreachable."""

    def __init__(self, upstream_port: int, bind: str) -> None:
        super().__init__(upstream_port)
        self.bind = bind

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.bind, 0)
        self.port = self._server.sockets[0].getsockname()[1]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh database on the machine's PostgreSQL, migrated, dropped afterwards."""
    name = f"cti_records_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(PG_ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    rendered = url.render_as_string(hide_password=False)
    # the tables exist before Asterisk starts: cdr_pgsql reads its table's columns at load
    await asyncio.to_thread(upgrade, rendered)
    yield rendered
    admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def netns() -> Iterator[Namespace]:
    ns = Namespace(HOST_IP, AST_IP)
    try:
        ns.up()
    except subprocess.CalledProcessError as exc:
        ns.down()
        pytest.fail(f"cannot make a network namespace here: {exc.stderr.decode()[-200:]}")
    yield ns
    ns.down()


@pytest.fixture
async def forwarder(netns: Namespace) -> AsyncIterator[Forwarder]:
    upstream = make_url(PG_ADMIN_URL)
    assert upstream.host in ("127.0.0.1", "localhost"), "the forwarder reaches a local server"
    fwd = Forwarder(upstream.port or 5432, HOST_IP)
    await fwd.start()
    yield fwd
    await fwd.close()


@pytest.fixture
async def records_asterisk(
    netns: Namespace, forwarder: Forwarder, pg_url: str
) -> AsyncIterator[NetnsAsterisk]:
    async with running_asterisk(netns, forwarder, pg_url) as inst:
        yield inst


@contextlib.asynccontextmanager
async def running_asterisk(
    netns: Namespace, forwarder: Forwarder, pg_url: str
) -> AsyncIterator[NetnsAsterisk]:
    """Asterisk in ``netns``, writing its records into ``pg_url`` through ``forwarder``."""
    root = ensure_root(lambda msg: print(f"[asterisk] {msg}", flush=True))
    rtp = 20000 + secrets.randbelow(400) * 100
    url = make_url(pg_url)
    name = f"test-{os.getpid()}-rec"
    records = RecordsDb(
        host=HOST_IP, port=forwarder.port, dbname=url.database or "", user=url.username or "",
        password=url.password or "", server=name,
    )  # fmt: skip
    spec = InstanceSpec(
        name=name, ami_secret=secrets.token_hex(16), ami_port=free_port(), ami_bind=AST_IP,
        ami_permit=(f"{HOST_IP}/32",), sip_port=free_port(socket.SOCK_DGRAM),
        http_port=free_port(), rtp_start=rtp, rtp_end=rtp + 99, agi_host=HOST_IP,
        agi_port=free_port(), records=records,
    )  # fmt: skip
    inst = NetnsAsterisk(root, spec, netns.name)
    try:
        # in threads: the forwarder Asterisk's modules connect through runs on this loop
        await asyncio.to_thread(inst.start, tie_to_parent=True)
        await asyncio.to_thread(inst.wait_fully_booted, 30)
        yield inst
    finally:
        await asyncio.to_thread(inst.stop)
        shutil.rmtree(inst.base, ignore_errors=True)


def write_config(path: Path, inst: NetnsAsterisk, db_url: str, http_port: int, menus: Path) -> None:
    spec = inst.spec
    path.write_text(
        f'[ami]\nhost = "{AST_IP}"\nport = {spec.ami_port}\nusername = "{spec.ami_user}"\n'
        f'secret = "{spec.ami_secret}"\nping_interval = 1.0\naction_timeout = 3.0\n'
        "reconnect_max_s = 0.5\n"
        # no access to Asterisk's logs: the records come from the store
        f'[asterisk]\ninstance = "{spec.name}"\nrecords = "postgresql"\n'
        f'log_dir = "{path.parent / "no-such-log-dir"}"\netc_dir = "{inst.etc_dir}"\n'
        f'[database]\nurl = "{db_url}"\n'
        f"[http]\nport = {http_port}\n"
        f'[agi]\nhost = "{HOST_IP}"\nport = {spec.agi_port}\nadvertise = "{HOST_IP}"\n'
        f'allow = ["{AST_IP}/32"]\n'
        f'[ivr]\nmenus = "{menus}"\nprompt_dir = "{inst.base / "lib" / "sounds" / "cti"}"\n'
        f'prompt_dir_asterisk = "{inst.inner}/lib/sounds/cti"\n'
        "[stats]\ntail_interval_s = 1\n"
    )


def node_and_ami(
    inst: NetnsAsterisk, pg_url: str, tmp_path: Path, queue: str
) -> tuple[DaemonProcess, AmiClient]:
    """The node for ``inst`` (this checkout's ``cti run``, records from the store, the IVR
    falling back to ``queue``), not started, and the test's own AMI client to ``inst``."""
    spec = inst.spec
    menus = tmp_path / "menus.toml"
    menus.write_text(MENUS.format(queue=queue))
    port = free_port()
    write_config(tmp_path / "node.toml", inst, pg_url, port, menus)
    env = checkout_env()
    node = DaemonProcess(tmp_path / "node.toml", tmp_path / "node.log", env, port)
    ami = AmiClient(AST_IP, spec.ami_port, spec.ami_user, spec.ami_secret, ping_interval=2.0,
                    action_timeout=5.0, backoff_initial=0.1, backoff_max=0.5)  # fmt: skip
    return node, ami


async def shut_down(node: DaemonProcess, inst: NetnsAsterisk, ami: AmiClient, db: Database) -> None:
    """A test's end: the node stopped, Asterisk's calls hung up, the clients closed."""
    await node.stop()
    with contextlib.suppress(Exception):
        await asyncio.to_thread(inst.cli, "channel request hangup all")
    await ami.close()
    await db.dispose()


async def call(ami: AmiClient, hold_s: float, linkedid: str = "") -> None:
    """A simulated caller through the IVR (its fallback: the queue), hanging up after
    ``hold_s`` unless the agent's side ends the call first; ``linkedid``: one we choose
    (as the system's own calls have, ``cti-out-...``), else Asterisk's."""
    number = f"1390{secrets.randbelow(10**7):07d}"
    ids = {"ChannelId": linkedid, "OtherChannelId": linkedid + "-2"} if linkedid else {}
    await ami.send_action(
        "Originate",
        {
            "Channel": f"Local/{DNIS}@cti-inbound", "Context": "cti-sim-caller",
            "Exten": "s", "Priority": "1", "CallerID": number,
            "Variable": [f"CTI_SIM_HOLD={hold_s}"], "Async": "true", **ids,
        },
    )  # fmt: skip


async def quiet(inst: NetnsAsterisk) -> bool:
    out = await asyncio.to_thread(inst.cli, "core show channels count")
    return re.search(r"^0 active channels", out, re.M) is not None


async def one_call(ami: AmiClient, inst: NetnsAsterisk, linkedid: str = "") -> Truth:
    """A short call (its caller hangs up in the IVR), over: as Asterisk's files say."""

    def calls() -> dict[str, Truth]:
        if not inst.cdr_csv.exists():  # no CDR written yet
            return {}
        return read_truth(inst.cdr_csv, inst.queue_log, 0)

    known = set(calls())
    await call(ami, hold_s=1.5, linkedid=linkedid)

    async def over() -> Truth | None:
        new = [t for k, t in (await asyncio.to_thread(calls)).items() if k not in known]
        return new[0] if len(new) == 1 and await quiet(inst) else None

    found = await wait_for(over, timeout=30, what="the call to end")
    assert found is not None
    return found


async def test_records_reach_the_store_without_the_log_dir_and_a_killed_node_recovers(
    records_asterisk: NetnsAsterisk, forwarder: Forwarder, pg_url: str, tmp_path: Path
) -> None:
    inst, spec = records_asterisk, records_asterisk.spec
    queue = f"rcq{secrets.token_hex(3)}"
    db = Database.from_url(pg_url)
    await queue_with_agents(db, queue, [(AGENT, EXT)])
    supervisor = await create_token(db, "rec-supervisor", "supervisor")
    node, ami = node_and_ami(inst, pg_url, tmp_path, queue)
    try:
        await ami.start()
        await ami.wait_connected(timeout=20)
        for name, value in (("CTI_DEFAULT_QUEUE", queue), ("CTI_SIM_RING", "1"),
                            ("CTI_SIM_TALK", "15")):  # fmt: skip
            await ami.send_action("Setvar", {"Variable": name, "Value": value})
        started = datetime.now(UTC)
        await node.start()

        async def member() -> bool:
            _, items = await ami.send_list_action("QueueStatus", {"Queue": queue})
            return any(i.get("Event") == "QueueMember" for i in items)

        await wait_for(member, timeout=30, what="the agent in the queue")
        qlog = QueueLog(inst.queue_log)

        async def seen(event: str, n: int, before: set[str]) -> bool:
            """``n`` lines of ``event`` of calls not in ``before``."""
            lines = await asyncio.to_thread(qlog.lines)
            return sum(1 for p in lines if p[4] == event and p[1] not in before) >= n

        # the node's first calls (no call of the server recorded yet: the restart recovers
        # from when the server was first watched, cti.calls.watchmark), entered while the
        # node runs (their first lines read live), in progress when it is killed, ended
        # while it is down: a call the agent answers (talks 15 s) and one waiting behind it
        # that hangs up after 8 s (the IVR takes about 1 s, on a loaded machine more: with
        # 3 s that caller once hung up before it was queued)
        before = {p[1] for p in await asyncio.to_thread(qlog.lines)}
        await call(ami, hold_s=25)
        await wait_for(lambda: seen("CONNECT", 1, before), timeout=30, what="an answer")
        await call(ami, hold_s=8)
        await wait_for(lambda: seen("ENTERQUEUE", 2, before), timeout=30, what="both queued")
        killed_at = datetime.now(UTC).timestamp()
        await node.kill()
        await wait_for(lambda: quiet(inst), timeout=40, what="the calls to end unseen", every=0.5)
        await node.start()  # recovers them from the tables

        truth = read_truth(inst.cdr_csv, inst.queue_log, started.timestamp() - 1)
        assert len(truth) == 2, f"{len(truth)} calls in the CDR file"
        unseen = [t for t in truth.values() if t.started_at < killed_at < t.ended_at]
        assert len(unseen) == 2, "a call was not in progress at the kill"
        await check_tables(db, inst, started.timestamp() - 1)
        await check_rows(db, truth, killed_at)
        await check_hourly(node, supervisor, inst, queue, started.timestamp() - 1)
        await check_postgres_outage(db, ami, inst, forwarder)
        async with db.session() as s:
            from stats.models import IngestStateRow

            keys = set(await s.scalars(select(IngestStateRow.path)))
        assert keys == {f"postgresql:{spec.name}"}, keys  # never a file's position
    except BaseException:
        print(f"--- node log tail:\n{node.tail(80)}")
        raise
    finally:
        await shut_down(node, inst, ami, db)


async def table_lines(db: Database, server: str) -> list[tuple[Any, ...]]:
    from cti.records.postgres import QUEUE_LOG, queue_log_line

    async with db.session() as s:
        rows = (await s.execute(select(QUEUE_LOG).where(QUEUE_LOG.c.server == server))).all()
    return [tuple(queue_log_line(r).split("|")) for r in rows]


async def check_tables(db: Database, inst: NetnsAsterisk, since: float) -> None:
    """Every queue_log line and CDR of the files is in the tables, under the server."""
    from cti.records.postgres import CDR, QUEUE_LOG

    file_lines = [p for p in QueueLog(inst.queue_log).lines() if int(p[0]) >= since]
    got = await table_lines(db, inst.spec.name)
    # the file's second is taken a moment after the row's: equal, or one more
    keyed = {(p[1:]): int(p[0]) for p in got}
    missing = [p for p in file_lines
               if not 0 <= int(p[0]) - keyed.get(tuple(p[1:]), -9) <= 1]  # fmt: skip
    assert not missing, f"queue_log lines not in the table: {missing}"
    async with db.session() as s:
        cdr = (await s.execute(select(CDR.c.linkedid, CDR.c.uniqueid, CDR.c.server))).all()
    truth = read_truth(inst.cdr_csv, inst.queue_log, since)
    in_table = {(r.linkedid, r.uniqueid) for r in cdr if r.server == inst.spec.name}
    in_file = {(t.linkedid, u) for t in truth.values() for u in t.uniqueids}
    assert in_file <= in_table, f"CDRs not in the table: {in_file - in_table}"
    async with db.session() as s:
        plain = await s.scalar(select(func.count()).where(QUEUE_LOG.c.data.is_not(None)))
    # logger.c's mode: adaptive (data1..data5) when its column check passes, else plain
    print(f"tables: {len(got)} queue_log rows ({plain} in plain mode), {len(cdr)} CDR rows "
          f"for {inst.spec.name}")  # fmt: skip


async def check_rows(db: Database, truth: dict[str, Truth], killed_at: float) -> None:
    async def rows() -> dict[str, list[CallRow]]:
        async with db.session() as s:
            found = (await s.scalars(select(CallRow))).all()
        out: dict[str, list[CallRow]] = {}
        for r in found:
            out.setdefault(r.linkedid, []).append(r)
        return out

    async def all_written() -> bool:
        return set(truth) <= set(await rows())

    await wait_for(all_written, timeout=60, what="a row for every CDR call")
    await asyncio.sleep(2)  # anything that would write twice has had its chance
    got = await rows()
    problems: list[str] = []
    for linkedid, t in sorted(truth.items()):
        if len(got.get(linkedid, [])) != 1:
            problems.append(f"{linkedid}: {len(got.get(linkedid, []))} rows")
            continue
        row = got[linkedid][0]
        found = row_problems(row, t)
        if t.started_at < killed_at < t.ended_at:
            # adopted after the restart: its start may be the adoption's when its CDR
            # was not there yet (issue #12's GAPPED_CDR_*)
            found = [p for p in found if "started_at" not in p]
        problems += [f"{p} (row from {row.source})" for p in found]
    assert not problems, "\n".join(problems)
    print("call rows:", {k: got[k][0].source for k in truth})


def independent_hourly(
    queue_log: Path, queue: str, since: float
) -> dict[tuple[str, int], dict[str, int]]:
    """Per (UTC day, hour of the entry): counts from the queue_log file's lines alone."""
    hour_of: dict[str, tuple[str, int]] = {}
    out: dict[tuple[str, int], dict[str, int]] = {}
    for p in sorted(QueueLog(queue_log).lines(), key=lambda p: int(p[0])):
        if p[2] != queue or int(p[0]) < since:
            continue
        if p[4] == "ENTERQUEUE":
            at = datetime.fromtimestamp(int(p[0]), UTC)
            hour_of[p[1]] = (at.date().isoformat(), at.hour)
        key = hour_of.get(p[1])
        if key is None:
            continue
        f = out.setdefault(key, {"offered": 0, "answered": 0, "abandoned": 0, "handled": 0})
        if p[4] == "ENTERQUEUE":
            f["offered"] += 1
        elif p[4] == "CONNECT":
            f["answered"] += 1
        elif p[4] in ("COMPLETEAGENT", "COMPLETECALLER"):
            f["handled"] += 1
        elif p[4] == "ABANDON":
            f["abandoned"] += 1
    return out


async def check_hourly(
    node: DaemonProcess, token: str, inst: NetnsAsterisk, queue: str, since: float
) -> None:
    expected = independent_hourly(inst.queue_log, queue, since)
    assert sum(f["answered"] for f in expected.values()) >= 1, expected
    assert sum(f["abandoned"] for f in expected.values()) >= 1, expected
    days = sorted({d for d, _ in expected})
    url = f"{node.base}/api/v1/stats/hourly?from={days[0]}&to={days[-1]}&queue={queue}"
    headers = {"Authorization": f"Bearer {token}"}

    async def report() -> dict[tuple[str, int], dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            body = await resp.json()
        got = {(r["day"], r["hour"]): r for r in body["rows"] if r["queue"] == queue}
        ok = all(got.get(k, {}).get(name) == v[name] for k, v in expected.items() for name in v)
        return got if ok else {}

    try:
        await wait_for(report, timeout=30, what="the hourly statistics")
    except AssertionError:
        raise AssertionError(f"hourly statistics differ from the queue_log: {expected}") from None
    print("hourly statistics equal the queue_log file:", expected)


async def check_postgres_outage(
    db: Database, ami: AmiClient, inst: NetnsAsterisk, forwarder: Forwarder
) -> None:
    """PostgreSQL unreachable for Asterisk while a call ends: the call goes on and is in
    the files, not in the tables; the next call's records are in the tables again."""
    server = inst.spec.name
    before = len(await table_lines(db, server))
    forwarder.cut()  # open connections dropped, new ones refused
    try:
        during = await one_call(ami, inst)
    finally:
        forwarder.restore()
    assert len(await table_lines(db, server)) == before, "rows written while PG was cut"
    nxt = await one_call(ami, inst)

    async def written() -> bool:
        from cti.records.postgres import CDR

        async with db.session() as s:
            found = set(await s.scalars(select(CDR.c.linkedid).where(CDR.c.server == server)))
        return nxt.linkedid in found and during.linkedid not in found

    await wait_for(written, timeout=20, what="the next call's CDR in the table again")
    # on Asterisk's host (the files), `cti records backfill` puts back what the tables lack
    files = FileRecords.in_log_dir(inst.log_dir)
    since = datetime.fromtimestamp(during.started_at - 1, UTC)
    done = await backfill(files, db, server, since)
    # one CDR per line of the call's in the CSV (a channel may have several). Read again
    # now: a channel's line can reach the CSV after the call looked over (0 channels)
    settled = (await asyncio.to_thread(read_truth, inst.cdr_csv, inst.queue_log, 0))[
        during.linkedid
    ]
    assert done.cdrs == len(settled.lastapps), (done, during.lastapps, settled.lastapps)
    assert done.lines >= len(during.queue_lines), done
    await check_tables(db, inst, since.timestamp())  # every line and CDR there again
    assert await backfill(files, db, server, since) == BackfillResult(0, 0)  # once only
    print(f"PostgreSQL cut: call {during.linkedid} only in Asterisk's files; "
          f"the next call's records in the tables again")  # fmt: skip


async def test_an_asterisk_booted_without_postgresql_gets_its_cdrs_written_by_the_driver(
    netns: Namespace, forwarder: Forwarder, pg_url: str, tmp_path: Path
) -> None:
    """Asterisk boots while PostgreSQL is unreachable (its cdr_pgsql never read its table's
    columns, and drops every CDR once PostgreSQL is back); PostgreSQL comes back; the
    node driving it sees its calls' CDRs missing from the table (two calls in a row) and
    loads cdr_pgsql again over AMI: the next call's CDR is in the table, with nobody
    reloading anything by hand. (Without the node's watch no CDR ever arrives.) The calls
    have a Linkedid the system chose, as its campaign, click-to-call and callback calls do
    (``cti-out-...``): they count as the server's calls (a server placing only those heals
    too), and cdr_pgsql writes their CDR under that Linkedid."""
    from cti.records.postgres import CDR

    forwarder.cut()  # PostgreSQL refuses Asterisk while it boots
    async with running_asterisk(netns, forwarder, pg_url) as inst:
        forwarder.restore()
        spec, queue = inst.spec, f"rhq{secrets.token_hex(3)}"
        node, ami = node_and_ami(inst, pg_url, tmp_path, queue)
        db = Database.from_url(pg_url)

        async def in_table() -> set[str]:
            async with db.session() as s:
                return set(await s.scalars(select(CDR.c.linkedid).where(CDR.c.server == spec.name)))

        try:
            await ami.start()
            await ami.wait_connected(timeout=20)
            await ami.send_action("Setvar", {"Variable": "CTI_DEFAULT_QUEUE", "Value": queue})
            await node.start()
            missed: set[str] = set()
            for _ in range(4):  # a call at a time until the node has seen enough missing
                mine = f"cti-out-{secrets.token_hex(6)}"
                assert (await one_call(ami, inst, mine)).linkedid == mine
                missed.add(mine)
                with contextlib.suppress(AssertionError):
                    await wait_for(lambda: _true("cdr_pgsql.so loaded again" in node.tail(200)),
                                   timeout=10, what="the node to load cdr_pgsql again")  # fmt: skip
                    break
            else:
                raise AssertionError(f"cdr_pgsql not loaded again after {len(missed)} calls")
            assert not missed & await in_table(), "a CDR written before the reload"
            healed = await one_call(ami, inst, f"cti-out-{secrets.token_hex(6)}")

            async def written() -> bool:
                return healed.linkedid in await in_table()

            await wait_for(written, timeout=20, what="the next call's CDR in the table")
            print(f"cdr_pgsql loaded again by the node: {len(missed)} CDR(s) only in the "
                  f"file, {healed.linkedid} in the table")  # fmt: skip
        except BaseException:
            print(f"--- node log tail:\n{node.tail(80)}")
            raise
        finally:
            await shut_down(node, inst, ami, db)


async def _true(value: bool) -> bool:
    return value
