"""Statistics store and reports on SQLite and PostgreSQL: queue_log ingest (incremental,
idempotent, rotation), derived entries, hourly rollup across a DST change, holds, IVR
abandons, agents, staffing, REST with roles and CSV."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select

import stats.wallboard
from cti.records.files import FileRecords
from cti.store.db import Database
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.auth import ACCOUNTS
from cti.web.ws import WsHub
from stats import reports
from stats.models import EntryRow, HourlyRow, LinkRow, QlogLineRow
from stats.routes import add_routes
from stats.service import StatsService
from stats.settings import StatsSettings
from stats.store import QueueRules
from tests.integration.transactions import count_transactions

TZ = ZoneInfo("Europe/Berlin")
DAY = date(2026, 10, 25)  # DST ends: local 02:00-03:00 happens twice
T0 = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
T1 = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET


def ts(base: datetime, s: float) -> str:
    return str(int((base + timedelta(seconds=s)).timestamp()))


def first_part() -> list[str]:
    return [
        # answered after 12 s (one ring-no-answer before), talk 30
        f"{ts(T0, 0)}|c1|support|NONE|ENTERQUEUE||138|1",
        f"{ts(T0, 4)}|c1|support|=evil|RINGNOANSWER|4000",
        f"{ts(T0, 12)}|c1|support|agent2|CONNECT|12|c1b|3",
        f"{ts(T0, 42)}|c1|support|agent2|COMPLETECALLER|12|30|1",
        # short abandon (3 s) and a late one (40 s)
        f"{ts(T0, 60)}|c2|support|NONE|ENTERQUEUE||139|1",
        f"{ts(T0, 63)}|c2|support|NONE|ABANDON|1|1|3",
        f"{ts(T0, 100)}|c3|support|NONE|ENTERQUEUE||139|1",
        f"{ts(T0, 140)}|c3|support|NONE|ABANDON|1|1|40",
        # second 02:xx hour: answered after 25 s (outside T=20), then a timeout
        f"{ts(T1, 0)}|c4|support|NONE|ENTERQUEUE||140|1",
        f"{ts(T1, 25)}|c4|support|agent2|CONNECT|25|c4b|2",
    ]


def second_part() -> list[str]:
    return [
        f"{ts(T1, 85)}|c4|support|agent2|COMPLETEAGENT|25|60|1",
        f"{ts(T1, 100)}|c5|sales|NONE|ENTERQUEUE||141|1",
        f"{ts(T1, 160)}|c5|sales|NONE|EXITWITHTIMEOUT|1|1|60",
        f"{ts(T1, 200)}|c6|sales|NONE|JOINEMPTY|",
    ]


def write(path: Path, lines: list[str], mode: str = "a") -> None:
    with path.open(mode) as fh:
        fh.write("".join(line + "\n" for line in lines))


@pytest.fixture
async def svc(db: Database, tmp_path: Path) -> StatsService:
    return StatsService(db, TZ, FileRecords.in_log_dir(tmp_path), StatsSettings())


def queue_log_of(svc: StatsService) -> Path:
    assert isinstance(svc.records, FileRecords)
    return svc.records.queue_log


async def count(db: Database, model: Any) -> int:
    async with db.session() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def hourly_snapshot(db: Database) -> list[tuple[Any, ...]]:
    async with db.session() as s:
        rows = (
            await s.execute(select(HourlyRow).order_by(HourlyRow.queue, HourlyRow.hour_start))
        ).scalars()
        return [(r.queue, r.hour_start, r.offered, r.answered, r.abandoned, r.talk_sum,
                 r.hold_sum, r.ivr_abandoned) for r in rows]  # fmt: skip


async def test_ingest_incremental_idempotent_and_dst(svc: StatsService, db: Database) -> None:
    qlog = queue_log_of(svc)
    assert qlog is not None
    assert (await svc.tail()).lines == 0  # no file yet: nothing, no error
    write(qlog, first_part())
    with qlog.open("a") as fh:
        fh.write(f"{ts(T1, 50)}|c9|support|NONE|ENTERQ")  # a torn last line: not yet read
    assert (await svc.tail()).lines == 10
    assert (await svc.tail()).lines == 0
    rows = [r for r in await reports.hourly(db, DAY, DAY, "support") if r["queue"] == "support"]
    assert [(r["hour"], r["offered"]) for r in rows] == [(2, 3), (2, 1)]  # two 02:00 buckets
    first, second = rows
    assert (first["answered"], first["abandoned"], first["short_abandoned"]) == (1, 2, 1)
    assert first["service_level"] == 1.0
    assert first["service_level_inclusive"] == pytest.approx(1 / 2)
    assert first["abandon_rate"] == pytest.approx(1 / 2)
    assert first["call_loss_rate"] == pytest.approx(2 / 3)
    assert first["avg_abandon_wait_s"] == pytest.approx(21.5)
    assert first["max_wait_s"] == 40 and first["ringnoanswer"] == 1
    assert (second["answered"], second["handled"], second["aht_s"]) == (1, 0, None)

    # the rest of the file arrives (the torn line completed first)
    with qlog.open("a") as fh:
        fh.write("UEUE||1|1\n")
    write(qlog, second_part())
    assert (await svc.tail()).lines == 5
    rows = [r for r in await reports.hourly(db, DAY, DAY) if r["queue"] == "*"]
    assert [r["offered"] for r in rows] == [3, 3]  # c9 waiting, c5 timed out, c6 refused
    second = rows[1]
    assert (second["handled"], second["timed_out"], second["refused"]) == (1, 1, 1)
    assert second["aht_s"] == 60 and second["service_level"] == 0.0

    # idempotent: a rebuild over everything changes nothing and stores no line twice
    before = (await count(db, QlogLineRow), await count(db, EntryRow), await hourly_snapshot(db))
    await svc.rebuild(T0 - timedelta(days=1))
    await svc.rebuild(T0 - timedelta(days=1))
    after = (await count(db, QlogLineRow), await count(db, EntryRow), await hourly_snapshot(db))
    assert before == after and before[0] == 15

    # daily and range summaries are the sums of the hours
    daily = {r["queue"]: r for r in await reports.daily(db, DAY, DAY)}
    assert daily["support"]["offered"] == 5 and daily["sales"]["offered"] == 1
    assert daily["*"]["offered"] == 6 and daily["*"]["refused"] == 1
    summary = {r["queue"]: r for r in await reports.summary(db, DAY, DAY)}
    assert summary["*"]["answered"] == 2 and summary["*"]["max_wait_s"] == 60


async def test_rotation_and_truncation(svc: StatsService, db: Database) -> None:
    qlog = queue_log_of(svc)
    assert qlog is not None
    write(qlog, first_part()[:4])
    await svc.tail()
    write(qlog, first_part()[4:])  # appended, then rotated before we read it
    os.rename(qlog, qlog.with_name("queue_log.1"))
    write(qlog, second_part())
    assert (await svc.tail()).lines == 10  # 6 from the rotated file's tail + 4 new
    assert await count(db, QlogLineRow) == 14
    write(qlog, second_part()[:1], mode="w")  # truncated and rewritten
    await svc.tail()
    assert await count(db, QlogLineRow) == 14
    # a rebuild reads the rotated sibling too; with a fresh store it restores everything
    await svc.store.clear_derived()
    await svc.rebuild(T0 - timedelta(hours=1))
    assert await count(db, QlogLineRow) == 14
    summary = {r["queue"]: r for r in await reports.summary(db, DAY, DAY)}
    assert summary["*"]["offered"] == 5


async def test_a_hold_begun_just_before_connect_is_in_call_hold(
    svc: StatsService, db: Database
) -> None:
    """The caller holds as the agent answers: the hold counts from CONNECT on."""
    qlog = queue_log_of(svc)
    assert qlog is not None
    await svc.link("h1", "LH1")
    await svc.held("LH1", "h1", T0 + timedelta(seconds=9.4))
    await svc.resumed("h1", T0 + timedelta(seconds=20))
    await svc.held("LH1", "h1", T0 + timedelta(seconds=2))  # while waiting: not in-call
    await svc.resumed("h1", T0 + timedelta(seconds=4))
    write(
        qlog,
        [
            f"{ts(T0, 0)}|h1|support|NONE|ENTERQUEUE||138|1",
            f"{ts(T0, 10)}|h1|support|agent2|CONNECT|10|h1b|2",
            f"{ts(T0, 70)}|h1|support|agent2|COMPLETECALLER|10|60|1",
        ],
    )
    await svc.tail()
    rows = {(r["queue"], r["hour_start"]): r for r in await reports.hourly(db, DAY, DAY)}
    row = rows[("support", T0.replace(minute=0).isoformat())]
    assert (row["hold_count"], row["hold_s"], row["hold_max_s"]) == (1, 10.0, 10.0)
    assert row["talk_s"] == 50.0 and row["aht_s"] == 60.0


async def test_hold_ivr_agents_staffing_and_rest(svc: StatsService, db: Database) -> None:
    qlog = queue_log_of(svc)
    assert qlog is not None
    await svc.link("c4", "L4")
    await svc.held("L4", "c4-agent-leg", T1 + timedelta(seconds=30))
    await svc.resumed("c4-agent-leg", T1 + timedelta(seconds=45))
    write(qlog, first_part() + second_part())
    await svc.tail()
    await svc.ivr_abandoned("ivr-1", T1 + timedelta(seconds=5), "4008001234", "main")
    await svc.ivr_abandoned("ivr-1", T1 + timedelta(seconds=5), "4008001234", "main")  # dup
    rows = {(r["queue"], r["hour_start"]): r for r in await reports.hourly(db, DAY, DAY)}
    sup2 = rows[("support", T1.replace(minute=0).isoformat())]
    assert (sup2["hold_count"], sup2["hold_s"], sup2["hold_max_s"]) == (1, 15.0, 15.0)
    assert sup2["talk_s"] == 45.0 and sup2["aht_s"] == 60.0  # talk excludes hold
    assert sup2["ivr_abandoned"] is None
    assert rows[("*", T1.replace(minute=0).isoformat())]["ivr_abandoned"] == 1

    agents = {a["agent"]: a for a in await reports.agent_report(db, DAY, DAY, TZ, svc.rules)}
    assert agents["agent2"]["handled"] == 2 and agents["=evil"]["missed"] == 1
    assert agents["agent2"]["hold_s"] == 15.0 and agents["agent2"]["talk_s"] == 75.0
    assert agents["agent2"]["occupancy"] is None  # never logged in: no denominator

    staff = await reports.staffing(db, DAY, "support", svc.rules, 0.8)
    assert [s["agents_needed"] for s in staff] == [1, 1]

    deps = WebDeps(db=db, live=_NoCalls(), registry=CollectorRegistry(), hub=WsHub(db))
    app = create_app(deps)
    add_routes(app, svc)
    sup = await create_token(db, "sup", "supervisor")
    agent = await create_token(db, "alice", "agent")
    async with TestClient(TestServer(app)) as client:
        q = "?from=2026-10-25&to=2026-10-25"
        r = await client.get("/api/v1/stats/hourly" + q, headers=_auth(agent))
        assert r.status == 403
        for name in ("hourly", "daily", "summary", "agents"):
            r = await client.get(f"/api/v1/stats/{name}{q}", headers=_auth(sup))
            assert r.status == 200, name
            assert (await r.json())["rows"]
        r = await client.get(f"/api/v1/stats/agents{q}&format=csv", headers=_auth(sup))
        text = await r.text()
        assert r.headers["Content-Type"].startswith("text/csv")
        assert "\r\n'=evil," in text and "\n=evil" not in text
        r = await client.get("/api/v1/stats/staffing?day=2026-10-25&queue=support",
                             headers=_auth(sup))  # fmt: skip
        assert [x["agents_needed"] for x in (await r.json())["rows"]] == [1, 1]
        r = await client.get("/api/v1/stats/hourly?from=2026-10-25&to=2020-01-01",
                             headers=_auth(sup))  # fmt: skip
        assert r.status == 400
        r = await client.get("/api/v1/stats/hourly?queue=a;drop", headers=_auth(sup))
        assert r.status == 400
        r = await client.get("/api/v1/stats/wallboard", headers=_auth(sup))
        assert (await r.json())["type"] == "wallboard"


class _NoCalls:
    def live_calls(self) -> list[dict[str, object]]:
        return []

    def health(self) -> dict[str, object]:
        return {"ok": True}


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_supervisor_scoped_to_teams_gets_only_their_queues(
    svc: StatsService, db: Database
) -> None:
    """Issue #15: the queue-scoped supervisor sees support's figures only (totals over
    support, no IVR abandons, sales 403); the unscoped supervisor sees both queues."""
    qlog = queue_log_of(svc)
    assert qlog is not None
    write(qlog, first_part() + second_part())
    await svc.tail()
    await svc.ivr_abandoned("ivr-1", T1 + timedelta(seconds=5), "4008001234", "main")
    deps = WebDeps(db=db, live=_NoCalls(), registry=CollectorRegistry(), hub=WsHub(db))
    app = create_app(deps)
    add_routes(app, svc)
    everyone = await create_token(db, "boss", "supervisor")
    north = await create_token(db, "north", "supervisor", queues=["support"])
    q = "?from=2026-10-25&to=2026-10-25"
    async with TestClient(TestServer(app)) as client:

        async def rows(name: str, token: str, extra: str = "") -> list[dict[str, Any]]:
            r = await client.get(f"/api/v1/stats/{name}{q}{extra}", headers=_auth(token))
            assert r.status == 200, (name, r.status)
            return list((await r.json())["rows"])

        for name in ("hourly", "daily", "summary"):
            assert {r["queue"] for r in await rows(name, everyone)} == {"support", "sales", "*"}
            mine = await rows(name, north)
            assert {r["queue"] for r in mine} == {"support", "*"}, name
            support = [r for r in mine if r["queue"] == "support"]
            totals = [r for r in mine if r["queue"] == "*"]
            assert [t["offered"] for t in totals] == [s["offered"] for s in support], name
            assert all(not t["ivr_abandoned"] for t in totals), name
        offered = {r["queue"]: r["offered"] for r in await rows("summary", everyone)}
        regions_all = await rows("regions", everyone)
        regions_mine = await rows("regions", north)
        assert sum(r["offered"] for r in regions_all) == offered["support"] + offered["sales"]
        assert sum(r["offered"] for r in regions_mine) == offered["support"] == 4
        for name in ("hourly", "summary", "regions"):
            r = await client.get(f"/api/v1/stats/{name}{q}&queue=sales", headers=_auth(north))
            assert r.status == 403, name
            assert (await r.json())["code"] == "out-of-scope"
        r = await client.get(f"/api/v1/stats/summary{q}&format=csv", headers=_auth(north))
        text = await r.text()
        assert "support" in text and "sales" not in text
        r = await client.get("/api/v1/stats/staffing?day=2026-10-25&queue=sales",
                             headers=_auth(north))  # fmt: skip
        assert r.status == 403
        # a person signed in as supervisor of team north (support; agent2's user) sees
        # agent2's figures only, not the other agent's
        accounts = app[ACCOUNTS]
        pw = "correct horse battery staple"
        await accounts.create_user("setup", {"login": "sue", "password": pw,
                                             "role": "supervisor"})  # fmt: skip
        await accounts.create_user("setup", {"login": "ben", "password": pw, "role": "agent",
                                             "agent": "agent2"})  # fmt: skip
        await accounts.put_team("setup", "north", {"queues": ["support"],
                                                   "members": ["sue", "ben"]})  # fmt: skip
        r = await client.post("/api/v1/auth/sign-in", json={"login": "sue", "password": pw})
        assert r.status == 200
        r = await client.get(f"/api/v1/stats/agents{q}")
        assert [a["agent"] for a in (await r.json())["rows"]] == ["agent2"]
        r = await client.get(f"/api/v1/stats/summary{q}")
        assert {x["queue"] for x in (await r.json())["rows"]} == {"support", "*"}
        r = await client.get(f"/api/v1/stats/agents{q}", headers=_auth(everyone))
        assert {a["agent"] for a in (await r.json())["rows"]} == {"agent2", "=evil"}

        svc.rules = {"support": QueueRules(), "sales": QueueRules()}  # both queues on show
        svc.wallboard.ivr_abandoned("ivr-now", datetime.now(UTC))
        r = await client.get("/api/v1/stats/wallboard", headers=_auth(north))
        frame = await r.json()
        assert [x["queue"] for x in frame["queues"]] == ["support"]
        assert frame["ivr_abandoned"] is None
        r = await client.get("/api/v1/stats/wallboard", headers=_auth(everyone))
        frame = await r.json()
        assert [x["queue"] for x in frame["queues"]] == ["sales", "support"]
        assert frame["ivr_abandoned"] == 1


async def test_links_of_a_burst_are_one_transaction(
    svc: StatsService, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision 0027: the channels' links of a burst go in one transaction (the facts
    worker hands consecutive links over together); a uniqueid keeps its first linkedid."""
    begins = count_transactions(db, monkeypatch)
    await svc.link("u0", "L0")
    begins.clear()
    await svc.links([("u0", "other"), ("u1", "L1"), ("u2", "L1"), ("u1", "later")])
    assert len(begins) == 1
    async with db.session() as s:
        rows = dict((await s.execute(select(LinkRow.uniqueid, LinkRow.linkedid))).all())
    assert rows == {"u0": "L0", "u1": "L1", "u2": "L1"}


async def test_a_start_loads_and_counts_a_whole_afternoon_in_short_steps(
    db: Database, tmp_path: Path
) -> None:
    """Issue #19: a daemon started at 3 pm takes the day so far (tens of thousands of
    entries) while it already makes pops. The rows are read off the event loop, then
    taken and counted in steps (stats.wallboard.ENTRIES_A_STEP): the loop runs other
    work between them, and the first frame has nothing left to count."""
    tz = midday_zone()
    svc = StatsService(db, tz, FileRecords.in_log_dir(tmp_path), StatsSettings())
    at = datetime.now(UTC) - timedelta(hours=1)
    write(queue_log_of(svc), [
        line for i in range(2000) for line in (
            f"{ts(at, 0)}|pm{i}|support|NONE|ENTERQUEUE||138{i:08d}|1",
            f"{ts(at, 5)}|pm{i}|support|agent{i % 9}|CONNECT|5|pm{i}b|2",
            f"{ts(at, 65)}|pm{i}|support|agent{i % 9}|COMPLETECALLER|5|60|1",
        )
    ], "w")  # fmt: skip
    await svc.tail()

    again = StatsService(db, tz, FileRecords.in_log_dir(tmp_path), StatsSettings())
    ticks = 0
    loading = True

    def tick() -> None:  # another piece of work on the loop (a pop, say)
        nonlocal ticks
        ticks += 1
        if loading:
            asyncio.get_running_loop().call_soon(tick)

    asyncio.get_running_loop().call_soon(tick)
    await again.load_today()
    loading = False
    assert ticks >= 2000 // stats.wallboard.ENTRIES_A_STEP
    assert again.wallboard._dirty == set()  # counted at the load, not by the first frame
    frame = await again.frame()
    assert frame["queues"][0]["today"]["offered"] == 2000


def midday_zone() -> ZoneInfo:
    """A zone where it is now between 10:00 and 14:00, so that 'today' has room on both
    sides of the test's calls whenever it runs."""
    hour = datetime.now(UTC).hour
    k = 12 - hour  # local = UTC + k
    if k > 12:
        k -= 24
    return ZoneInfo("Etc/GMT" + (f"{-k:+d}" if k else ""))


async def test_the_wallboard_takes_what_an_ingest_changed_not_the_whole_day(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #19: every ingest re-read the whole day's entries (tens of thousands by the
    afternoon) into the wallboard on the event loop. Now an ingest loads the entries of
    the calls it derived again, and the IVR abandons stored since; a start, the whole day."""
    tz = midday_zone()
    svc = StatsService(db, tz, FileRecords.in_log_dir(tmp_path), StatsSettings())
    now = datetime.now(UTC)

    def call(i: int, at: datetime) -> list[str]:
        return [
            f"{ts(at, 0)}|day{i}|support|NONE|ENTERQUEUE||138{i:08d}|1",
            f"{ts(at, 5)}|day{i}|support|agent{i % 7}|CONNECT|5|day{i}b|2",
            f"{ts(at, 65)}|day{i}|support|agent{i % 7}|COMPLETECALLER|5|60|1",
        ]

    morning = now - timedelta(hours=1)
    write(queue_log_of(svc), [line for i in range(300) for line in call(i, morning)], "w")
    loaded: list[int] = []
    merge = svc.wallboard.merge_store

    def counting(rows: Any, ivr: Any, at: datetime) -> None:
        rows = list(rows)
        loaded.append(len(rows))
        merge(rows, ivr, at)

    monkeypatch.setattr(svc.wallboard, "merge_store", counting)
    await svc.tail()
    assert loaded == [300]  # the first load of the day: the whole day
    await svc.ivr_abandoned("ivr-1", now - timedelta(minutes=5), "4008", "main")
    later = call(300, now - timedelta(minutes=3)) + call(301, now - timedelta(minutes=2))
    write(queue_log_of(svc), later)
    await svc.tail()
    assert loaded == [300, 2]  # the two calls the ingest derived, not the day again
    frame = await svc.frame()
    assert frame["queues"][0]["today"]["offered"] == 302
    assert frame["ivr_abandoned"] == 1

    # a daemon started now shows the day so far, IVR abandons included, without a new line
    again = StatsService(db, tz, FileRecords.in_log_dir(tmp_path), StatsSettings())
    await again.load_today()
    frame = await again.frame()
    assert frame["queues"][0]["today"]["offered"] == 302
    assert frame["ivr_abandoned"] == 1
    agents = {a: again.wallboard.agents_today({})[a]["handled"] for a in ("agent0", "agent6")}
    assert agents == {"agent0": 44, "agent6": 43}
