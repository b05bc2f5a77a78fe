"""ACD routing beyond app_queue against the real Asterisk: owner-first routing, per-queue
max wait, overflow to voicemail and to a callback offer, callbacks that keep their place
(offered to the agent, the customer dialled, retried when unreached, surviving a daemon
restart), lost callers closed by a callback, and click-to-call.

Owner routing, max wait and overflow to voicemail are Asterisk's timing and run on SQLite
only (harness.SQLITE_ONLY); every callback test runs on PostgreSQL too (the callback store)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from acd import callback_store as cbs
from acd import store
from acd.feature import AcdFeature
from acd.queues_conf import FILE_NAME, owner_queue
from acd.service import AcdService
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk.instance import ChrootAsterisk
from cti.daemon import Daemon
from cti.events import CallbackOffered, IvrCallbackRequested, OutboundCallStarted
from cti.features import Feature
from cti.store.tokens import create_token
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import SQLITE_ONLY, originate_call, wait_for
from tests.acceptance.test_acd import (
    CALL_EVENTS,
    Events,
    answered_by,
    set_sim,
    setup_queue,
)

Factory = Callable[..., Awaitable[Daemon]]
SIM_GLOBALS = {"CTI_SIM_OUTBOUND": "", "CTI_SIM_CUSTOMER_RING": "", "CTI_SIM_CUSTOMER_TALK": ""}
EVENTS = CALL_EVENTS | {"DialBegin", "DialEnd", "UserEvent", "Hangup"}
CALLER = "13912345678"  # a valid CN mobile number: +8613912345678
CALLER_E164 = "+8613912345678"


async def set_globals(ami: AmiClient, values: dict[str, str]) -> None:
    for var, value in values.items():
        await ami.send_action("Setvar", {"Variable": var, "Value": value})


@pytest.fixture
async def routing(asterisk: ChrootAsterisk, db_url: str, ami: AmiClient) -> AsyncIterator[Factory]:
    """Daemons running the ACD (``[acd]`` overrides as keywords), outbound calls going to
    the simulated customer; everything the test changed is put back at teardown."""
    started: list[Daemon] = []
    await set_globals(ami, {**SIM_GLOBALS, "CTI_SIM_OUTBOUND": "1"})

    async def factory(
        *, features: list[Feature] | None = None, sections: dict[str, Any] | None = None,
        **acd: Any,
    ) -> Daemon:  # fmt: skip
        """``features``: the daemon's (default: the ACD alone); ``sections``: more
        configuration sections (``ivr``, ``dial``)."""
        settings = daemon_settings(
            asterisk, db_url,
            acd={"asterisk_etc_dir": str(asterisk.etc_dir), "callback_retry_s": 1, **acd},
            **(sections or {}),
        )  # fmt: skip
        daemon = Daemon(settings, features=features or [AcdFeature()])
        await daemon.start()
        started.append(daemon)
        await daemon.ami.wait_connected(timeout=15)
        return daemon

    yield factory
    for daemon in started:
        await daemon.stop()
    await set_globals(ami, SIM_GLOBALS)
    (asterisk.etc_dir / FILE_NAME).unlink(missing_ok=True)
    await ami.send_action("QueueReload", {"Parameters": "yes"})
    await asyncio.to_thread(asterisk.cli, "channel request hangup all")


def feature(daemon: Daemon) -> AcdFeature:
    f = daemon.features[0]
    assert isinstance(f, AcdFeature) and f.service is not None and f.callbacks is not None
    return f


def svc(daemon: Daemon) -> AcdService:
    s = feature(daemon).service
    assert s is not None
    return s


async def call(
    ami: AmiClient, queue: str, *, caller: str = CALLER, hold_s: float = 30,
    dtmf: str = "", dtmf_delay: float = 1, owner: str = "",
) -> str:  # fmt: skip
    """A simulated caller into [cti-queue] (optionally recognised with owner agent
    ``owner``), pressing ``dtmf`` ``dtmf_delay`` s after it is answered. ``queue`` ""
    goes through [cti-inbound] (which answers; without an IVR the call reaches the
    default queue, support); straight into [cti-queue] nothing answers before an agent
    (or the overflow's callback offer) does."""
    linkedid = f"t-{secrets.token_hex(6)}"
    variables = [f"CTI_SIM_HOLD={hold_s}"]
    if dtmf:
        variables += [f"CTI_SIM_DTMF={dtmf}", f"CTI_SIM_DTMF_DELAY={dtmf_delay}"]
    if owner:
        variables.append(f"CTI_OWNER_AGENT={owner}")
    await ami.send_action(
        "Originate",
        {
            "Channel": f"Local/{queue}@cti-queue" if queue else "Local/4008001234@cti-inbound",
            "Context": "cti-sim-caller", "Exten": "s",
            "Priority": "1", "CallerID": caller, "Variable": variables, "Async": "true",
            "ChannelId": linkedid, "OtherChannelId": linkedid + "-2",
        },
    )  # fmt: skip
    return linkedid


def ts(msg: Message) -> float:
    return float(msg["Timestamp"])


def user_events(events: Events, name: str) -> list[Message]:
    return [m for m in events.of("UserEvent") if m.get("UserEvent") == name]


# --- owner routing -------------------------------------------------------------------------


@SQLITE_ONLY
async def test_owner_rings_first_then_the_queue(ami: AmiClient, routing: Factory) -> None:
    s = svc(await routing())
    await store.put_queue(s.db, store.queue_params("acd_ownx", {}))
    await setup_queue(s, "acd_own", {"101": 0}, owner_ring_s=3)
    # the owner a102 is logged in (a skill elsewhere), not a member of acd_own
    await store.put_agent(s.db, "a102", "", [("local", "102")], {"acd_ownx": 0})
    await s.set_status("a102", "available", by="test")
    owner = await store.get_agent(s.db, "a102")
    assert owner is not None
    personal = owner_queue(owner["id"])

    await set_sim(ami, ring=0.5, talk=0.5)
    with Events(ami, EVENTS) as events:
        lid = await call(ami, "acd_own", owner="a102")
        assert await answered_by(events, lid) == "a102"
        assert events.of("AgentConnect", lid)[0]["Queue"] == personal
        assert {m["MemberName"] for m in events.of("AgentCalled", lid)} == {"a102"}

        async def owner_idle() -> bool:  # asked of Asterisk: events may come late under load
            _, items = await ami.send_list_action("QueueStatus", {"Queue": personal})
            return any(i.get("Name") == "a102" and i.get("InCall") == "0"
                       and i.get("Status") == "1" for i in items)  # fmt: skip

        await wait_for(owner_idle, timeout=20, what="the owner idle again")

        async def owner_available() -> tuple[str, int] | None:  # and in the daemon's model
            return await s.owner_target("acd_own", "a102")

        assert await wait_for(owner_available, timeout=20, what="the owner available") == (
            personal, 3,
        )  # fmt: skip

        # an owner who does not answer rings N s, then the queue takes over
        await set_sim(ami, ring=8, talk=0.5)
        lid = await call(ami, "acd_own", owner="a102")

        async def queue_rang() -> list[Message]:
            return [m for m in events.of("AgentCalled", lid) if m["Queue"] == "acd_own"]

        in_queue = (await wait_for(queue_rang, timeout=15, what="the queue after the owner"))[0]
        first = events.of("AgentCalled", lid)[0]
        assert (first["Queue"], first["MemberName"]) == (personal, "a102")
        assert in_queue["MemberName"] == "a101"
        assert 3 <= ts(in_queue) - ts(first) < 4.5

        await ami.send_action("Hangup", {"Channel": lid})

        # an owner that is not an agent (or anything odd) goes straight to the queue
        lid = await call(ami, "acd_own", owner="nobody&PJSIP/evil")

        async def joined() -> list[Message]:
            return events.of("QueueCallerJoin", lid)

        msgs = await wait_for(joined, timeout=10, what="the queue without owner")
        assert [m["Queue"] for m in msgs] == ["acd_own"]


# --- max wait and overflow -------------------------------------------------------------------


@SQLITE_ONLY
async def test_per_queue_max_wait(ami: AmiClient, routing: Factory) -> None:
    s = svc(await routing())
    await setup_queue(s, "acd_maxw", {"101": 0}, max_wait_s=3)
    await s.set_status("a101", "paused", "break", by="test")
    resp = await ami.send_action("Getvar", {"Variable": "CTI_MAXWAIT_acd_maxw"})
    assert resp.get("Value") == "3"
    with Events(ami, EVENTS) as events:
        lid = await call(ami, "acd_maxw", hold_s=20)

        async def left() -> list[Message]:
            return events.of("QueueCallerLeave", lid)

        leave = (await wait_for(left, timeout=15, what="the caller timed out"))[0]
        join = events.of("QueueCallerJoin", lid)[0]
    # app_queue starts the clock at time(NULL), whole seconds (apps/app_queue.c: qe.start =
    # time(NULL); qe.expire = qe.start + timeout): a 3 s maximum is between 2 and 3 s of
    # waiting, plus the poll that notices it
    assert 2.0 < ts(leave) - ts(join) < 4.5


@SQLITE_ONLY
async def test_overflow_to_voicemail_at_the_configured_time(
    ami: AmiClient, routing: Factory, asterisk: ChrootAsterisk
) -> None:
    conf = asterisk.etc_dir / "voicemail.conf"
    if "8001 =>" not in conf.read_text():
        conf.write_text(conf.read_text() + "8001 => 1234,Overflow box\n")
        await asyncio.to_thread(asterisk.cli, "voicemail reload")
    inbox = asterisk.base / "spool" / "voicemail" / "default" / "8001" / "INBOX"
    before = set(inbox.glob("msg*.txt")) if inbox.exists() else set()
    recording = inbox.parent / "tmp"  # where app_voicemail records before moving to INBOX
    recording_before = set(recording.glob("*")) if recording.exists() else set()
    s = svc(await routing())
    await setup_queue(
        s, "acd_ovm", {"101": 0}, overflow_after_s=3, overflow_action="voicemail",
        overflow_mailbox="8001",
    )  # fmt: skip
    await s.set_status("a101", "paused", "break", by="test")
    with Events(ami, EVENTS) as events:
        # prompts take ~8 s, then it records until the caller hangs up
        lid = await call(ami, "acd_ovm", hold_s=20)

        async def overflowed() -> list[Message]:
            return user_events(events, "CtiAcdOverflow")

        ev = (await wait_for(overflowed, timeout=15, what="the overflow"))[0]
        join = events.of("QueueCallerJoin", lid)[0]
    assert (ev["Action"], ev["Target"]) == ("voicemail", "8001")
    assert 3 <= ts(ev) - ts(join) < 4.5

    # the caller hangs up 2 s into the recording (it would at its 20 s hold): the message
    # is kept when the caller hangs up

    async def recording_started() -> set[Any]:
        return set(recording.glob("*")) - recording_before if recording.exists() else set()

    await wait_for(recording_started, timeout=30, what="the voicemail recording")
    await asyncio.sleep(2)
    _, items = await ami.send_list_action("CoreShowChannels")
    (channel,) = [i["Channel"] for i in items if i.get("Uniqueid") == lid]
    await ami.send_action("Hangup", {"Channel": channel})

    async def message() -> set[Any]:
        return set(inbox.glob("msg*.txt")) - before if inbox.exists() else set()

    new = await wait_for(message, timeout=30, what="the voicemail message")
    assert CALLER in next(iter(new)).read_text()


async def test_overflow_to_a_callback_offer(ami: AmiClient, routing: Factory) -> None:
    daemon = await routing()
    s = svc(daemon)
    await setup_queue(s, "acd_ocb", {"101": 0}, overflow_after_s=3, overflow_action="callback")
    await s.set_status("a101", "paused", "break", by="test")
    with Events(ami, EVENTS) as events:
        # the caller presses 1 during the offer (it starts 3 s after joining)
        lid = await call(ami, "acd_ocb", hold_s=20, dtmf="1", dtmf_delay=5)

        async def overflowed() -> list[Message]:
            return user_events(events, "CtiAcdOverflow")

        ev = (await wait_for(overflowed, timeout=15, what="the callback offer"))[0]
        join = events.of("QueueCallerJoin", lid)[0]
        assert (ev["Action"], ev["Target"]) == ("callback", "acd_ocb")
        assert 3 <= ts(ev) - ts(join) < 4.5

        async def queued() -> list[dict[str, Any]]:
            return await cbs.with_status(daemon.db, ("queued",))

        row = (await wait_for(queued, timeout=20, what="the callback request"))[0]
    assert (row["number"], row["queue"], row["linkedid"]) == (CALLER_E164, "acd_ocb", lid)


# --- callbacks --------------------------------------------------------------------------------


async def test_callback_keeps_its_place_is_offered_and_dials_the_customer(
    ami: AmiClient, routing: Factory
) -> None:
    daemon = await routing()
    s = svc(daemon)
    offered: list[CallbackOffered] = []
    started: list[OutboundCallStarted] = []
    daemon.bus.subscribe(CallbackOffered, offered.append)
    daemon.bus.subscribe(OutboundCallStarted, started.append)
    await set_globals(ami, {"CTI_SIM_CUSTOMER_RING": "1", "CTI_SIM_CUSTOMER_TALK": "2"})
    await set_sim(ami, ring=0.5, talk=2)
    await setup_queue(s, "support", {"101": 0}, callback_key="1", strategy="linear")
    await s.set_status("a101", "paused", "break", by="test")
    token = await create_token(daemon.db, "a101", "agent")
    base = f"http://127.0.0.1:{daemon.http_port}/api/v1/acd"
    headers = {"Authorization": f"Bearer {token}"}

    with Events(ami, EVENTS) as events:
        a = await call(ami, "", hold_s=30, dtmf="1", dtmf_delay=3)  # via the inbound context

        async def joined(lid: str) -> list[Message]:
            return events.of("QueueCallerJoin", lid)

        await wait_for(lambda: joined(a), timeout=10, what="caller A queued")
        b = await call(ami, "", caller="13800138000", hold_s=40)  # later than A
        await wait_for(lambda: joined(b), timeout=10, what="caller B queued")
        async with aiohttp.ClientSession(headers=headers) as http:

            async def open_callbacks() -> list[dict[str, Any]]:
                async with http.get(f"{base}/callbacks?status=open") as resp:
                    assert resp.status == 200
                    return [c for c in (await resp.json())["callbacks"] if c["status"] == "queued"]

            cb = (await wait_for(open_callbacks, timeout=20, what="the queued callback"))[0]
            assert (cb["number"], cb["linkedid"], cb["queue"]) == (CALLER_E164, a, "support")

            async def lost_entry() -> list[dict[str, Any]]:
                async with http.get(f"{base}/lost-callers?open=0") as resp:
                    rows = (await resp.json())["lost_callers"]
                return [r for r in rows if r["linkedid"] == a]

            await wait_for(lost_entry, timeout=20, what="A on the lost-caller list")
            slot = cb["call_linkedid"]
            slot_join = (await wait_for(lambda: joined(slot), timeout=10, what="placeholder"))[0]
            assert slot_join["Position"] == "1"  # A's place, ahead of B

            await s.set_status("a101", "available", by="test")  # the agent comes back

            async def connects() -> list[Message]:
                return [m for m in events.of("AgentConnect") if m["Queue"] == "support"]

            first = (await wait_for(connects, timeout=15, what="the first answer"))[0]
            assert first["Linkedid"] == slot  # the callback is served before B

            async def customer_answered() -> list[Message]:
                return [
                    m for m in events.of("DialEnd", slot)
                    if m.get("DialStatus") == "ANSWER" and m.get("Context") == "cti-outbound"
                ]  # fmt: skip

            dial_end = (await wait_for(customer_answered, timeout=15, what="customer"))[0]
            assert dial_end["DestChannel"].startswith("Local/8613912345678@cti-sim-customer")
            assert [(o.agent, o.callback_id, o.number, o.linkedid) for o in offered] == [
                ("a101", cb["id"], CALLER_E164, a)
            ]
            assert [(o.kind, o.linkedid, o.callback_id) for o in started] == [
                ("callback", slot, cb["id"])
            ]

            async def done() -> dict[str, Any] | None:
                row = await cbs.get(daemon.db, cb["id"])
                return row if row is not None and row["status"] == "done" else None

            row = await wait_for(done, timeout=10, what="the callback done")
            assert (row["outcome"], row["agent"]) == ("reached", "a101")

            async def closed() -> bool:
                rows = await lost_entry()
                return bool(rows and rows[0]["closed_at"])

            await wait_for(closed, timeout=10, what="A's lost-caller entry closed")
            assert (await lost_entry())[0]["closed_by"] == "called_back"
        # B is served next, by the same agent once the callback conversation ended
        assert await answered_by(events, b, timeout=30) == "a101"
        assert ts(events.of("AgentConnect", b)[0]) > ts(dial_end)


async def test_unreached_callback_is_retried_and_stays_visible(
    ami: AmiClient, routing: Factory
) -> None:
    daemon = await routing(callback_attempts=2, customer_ring_s=2)
    s = svc(daemon)
    await set_globals(ami, {"CTI_SIM_CUSTOMER_RING": "20"})  # the customer never answers
    await set_sim(ami, ring=0.3, talk=1)
    await setup_queue(s, "acd_cbr", {"101": 0})
    # the IVR's callback option asks for it
    daemon.bus.publish(IvrCallbackRequested("t-ivr-1", datetime.now(UTC), CALLER_E164, "acd_cbr"))
    token = await create_token(daemon.db, "sup", "supervisor")
    url = f"http://127.0.0.1:{daemon.http_port}/api/v1/acd/callbacks?status=open"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

        async def unreached() -> list[dict[str, Any]]:
            async with http.get(url) as resp:
                rows = (await resp.json())["callbacks"]
            return [r for r in rows if r["status"] == "unreached"]

        with Events(ami, EVENTS) as events:
            row = (await wait_for(unreached, timeout=40, what="two failed attempts"))[0]
            dials = [m for m in events.of("DialEnd") if m.get("Context") == "cti-outbound"]
    assert (row["source"], row["attempts"], row["linkedid"]) == ("ivr", 2, "t-ivr-1")
    assert [m["DialStatus"] for m in dials] == ["NOANSWER", "NOANSWER"]


async def test_a_queued_callback_survives_a_daemon_restart(
    ami: AmiClient, routing: Factory
) -> None:
    first = await routing()
    s = svc(first)
    await set_globals(ami, {"CTI_SIM_CUSTOMER_RING": "1", "CTI_SIM_CUSTOMER_TALK": "1"})
    await set_sim(ami, ring=0.3, talk=1)
    await setup_queue(s, "acd_cbs", {"101": 0})
    await s.set_status("a101", "paused", "break", by="test")
    cb = await feature(first).callbacks.request(  # type: ignore[union-attr]
        number=CALLER, queue="acd_cbs", source="ivr"
    )

    async def queued_in(daemon: Daemon) -> dict[str, Any] | None:
        row = await cbs.get(daemon.db, cb["id"])
        return row if row is not None and row["status"] == "queued" else None

    row = await wait_for(lambda: queued_in(first), timeout=10, what="queued")
    await first.stop()
    second = await routing()
    offered: list[CallbackOffered] = []
    second.bus.subscribe(CallbackOffered, offered.append)
    await asyncio.sleep(1)  # the restarted daemon resyncs
    assert (await queued_in(second) or {}).get("call_linkedid") == row["call_linkedid"]
    await svc(second).set_status("a101", "available", by="test")

    async def done() -> bool:
        r = await cbs.get(second.db, cb["id"])
        return r is not None and r["status"] == "done"

    await wait_for(done, timeout=20, what="the callback reached after the restart")
    assert [o.callback_id for o in offered] == [cb["id"]]


async def test_an_agent_dials_or_closes_a_callback_by_hand(
    ami: AmiClient, routing: Factory
) -> None:
    daemon = await routing()
    s = svc(daemon)
    started: list[OutboundCallStarted] = []
    daemon.bus.subscribe(OutboundCallStarted, started.append)
    await set_globals(ami, {"CTI_SIM_CUSTOMER_RING": "1", "CTI_SIM_CUSTOMER_TALK": "1"})
    await set_sim(ami, ring=0.3, talk=2)
    await setup_queue(s, "acd_cbh", {"101": 0})
    await s.set_status("a101", "paused", "break", by="test")  # nobody takes it from the queue
    await store.put_agent(s.db, "a102", "", [("local", "102")], {"acd_other": 0})
    callbacks = feature(daemon).callbacks
    assert callbacks is not None
    one = await callbacks.request(number=CALLER, queue="acd_cbh", source="ivr")
    two = await callbacks.request(number="13800138000", queue="acd_cbh", source="ivr")
    tokens = {n: await create_token(daemon.db, n, "agent") for n in ("a101", "a102")}
    base = f"http://127.0.0.1:{daemon.http_port}/api/v1/acd/callbacks"
    async with aiohttp.ClientSession() as http:

        async def post(who: str, path: str, body: Any = None) -> tuple[int, Any]:
            async with http.post(
                f"{base}{path}", json=body or {}, headers={"Authorization": f"Bearer {tokens[who]}"}
            ) as resp:
                return resp.status, await resp.json()

        async def listed(who: str) -> list[int]:
            async with http.get(
                f"{base}?status=all", headers={"Authorization": f"Bearer {tokens[who]}"}
            ) as resp:
                return [c["id"] for c in (await resp.json())["callbacks"]]

        async def status_of(cid: int) -> str:
            row = await cbs.get(daemon.db, cid)
            assert row is not None
            return str(row["status"])

        async def both_queued() -> bool:
            return [await status_of(one["id"]), await status_of(two["id"])] == ["queued"] * 2

        await wait_for(both_queued, timeout=10, what="both placeholders queued")
        assert sorted(await listed("a101")) == sorted([one["id"], two["id"]])
        assert await listed("a102") == []  # not its queue, not assigned to it
        assert (await post("a102", f"/{one['id']}/dial"))[0] == 404

        with Events(ami, EVENTS) as events:
            status, body = await post("a101", f"/{one['id']}/dial")
            assert status == 202, body
            lid = body["linkedid"]

            async def answered() -> list[Message]:
                return [m for m in events.of("DialEnd", lid) if m.get("DialStatus") == "ANSWER"
                        and m.get("Context") == "cti-outbound"]  # fmt: skip

            await wait_for(answered, timeout=15, what="the customer reached")

            async def done() -> bool:
                return await status_of(one["id"]) == "done"

            await wait_for(done, timeout=10, what="the callback done")
        assert [(o.kind, o.linkedid, o.callback_id) for o in started] == [
            ("callback", lid, one["id"])
        ]
        assert (await post("a101", f"/{one['id']}/dial"))[0] == 409  # done already

        status, body = await post("a101", f"/{two['id']}/close", {"outcome": "<b>"})
        assert status == 400
        status, body = await post("a101", f"/{two['id']}/close", {"outcome": "wrong_number"})
        assert status == 200 and (body["status"], body["outcome"]) == ("done", "wrong_number")

        # its placeholder left the queue
        async def empty() -> bool:
            return not s.live.queues["acd_cbh"].entries

        await wait_for(empty, timeout=10, what="the placeholders gone")


# --- click-to-call ----------------------------------------------------------------------------


async def test_click_to_call_rings_the_agent_then_reaches_the_customer(
    ami: AmiClient, routing: Factory
) -> None:
    daemon = await routing()
    s = svc(daemon)
    started: list[OutboundCallStarted] = []
    daemon.bus.subscribe(OutboundCallStarted, started.append)
    await set_globals(ami, {"CTI_SIM_CUSTOMER_RING": "1", "CTI_SIM_CUSTOMER_TALK": "2"})
    await set_sim(ami, ring=0.5, talk=3)
    await setup_queue(s, "acd_c2c", {"101": 0})
    await store.put_agent(s.db, "a102", "", [("local", "102")], {})
    tokens = {n: await create_token(daemon.db, n, "agent") for n in ("a101", "a102")}
    url = f"http://127.0.0.1:{daemon.http_port}/api/v1/acd/agents/a101/dial"
    async with aiohttp.ClientSession() as http:

        async def dial(who: str, number: str) -> tuple[int, dict[str, Any]]:
            async with http.post(
                url, json={"number": number}, headers={"Authorization": f"Bearer {tokens[who]}"}
            ) as resp:
                return resp.status, await resp.json()

        # a caller from that number hung up unanswered (support has nobody): a lost caller
        lost = await originate_call(ami, caller=CALLER, hold_s=1.5)

        async def lost_entry() -> list[dict[str, Any]]:
            rows = await store.list_lost(daemon.db, open_only=False, limit=50)
            return [r for r in rows if r["linkedid"] == lost]

        await wait_for(lost_entry, timeout=20, what="the lost caller")
        assert (await dial("a102", "139 1234 5678"))[0] == 403  # not for someone else
        for bad in ("123", "139&PJSIP/evil", "+86 139 1234 5678 9999", "x" * 40):
            status, body = await dial("a101", bad)
            assert status == 400, (bad, body)
        with Events(ami, EVENTS) as events:
            status, body = await dial("a101", "139 1234 5678")
            assert status == 202, body
            lid = body["linkedid"]

            async def answered() -> list[Message]:
                return [m for m in events.of("DialEnd", lid) if m.get("DialStatus") == "ANSWER"]

            end = (await wait_for(answered, timeout=15, what="the customer leg answered"))[0]
            # the agent's device rang first (it is the originated channel), then the customer
            assert end["Channel"].startswith("Local/101@cti-sim-agents")
            assert end["DestChannel"].startswith("Local/8613912345678@cti-sim-customer")
    assert [(o.agent, o.kind, o.linkedid, o.number) for o in started] == [
        ("a101", "click_to_call", lid, CALLER_E164)
    ]

    async def closed() -> bool:
        rows = await lost_entry()
        return bool(rows[0]["closed_at"])

    await wait_for(closed, timeout=10, what="the lost caller closed by the call")
    assert (await lost_entry())[0]["closed_by"] == "click_to_call"
