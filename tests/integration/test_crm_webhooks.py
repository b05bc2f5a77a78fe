"""Outbound webhooks against a real local HTTP receiver (aiohttp on 127.0.0.1:0), and
the external caller lookup against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, select

from crm_bridge.config import CrmConfig, ExternalLookup
from crm_bridge.directory import ExternalCrmLookup
from crm_bridge.webhooks import WORKER, Delivery, WebhookDispatcher, verify
from cti.bus import EventBus
from cti.events import CallAnswered, CallOffered
from cti.pending import PendingStore
from cti.store.db import Database
from cti.store.models import PendingItem
from tests.integration.test_crm_harness import crm_server
from tests.local_http import serving

SECRET = "s3cret-s3cret-s3cret"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    delay_s: float = 0.0
    status: int = 200
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        rx.seen.append((dict(request.headers), await request.read()))
        if rx.delay_s:
            await asyncio.sleep(rx.delay_s)
        if len(rx.seen) <= rx.fail_first:
            return web.Response(status=500)
        return web.Response(status=rx.status)

    async def lookup(request: web.Request) -> web.Response:
        rx.seen.append((dict(request.headers), request.query_string.encode()))
        if request.query.get("number") == "+14155550100":
            return web.json_response({"id": "ext-7", "name": "Ext Caller", "company": "Far Inc"})
        if request.query.get("number") == "+14155550199":
            await asyncio.sleep(5)
        return web.json_response({"error": "unknown"}, status=404)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/lookup", lookup)
    async with serving(app) as base:
        rx.url = base
        yield rx


def _config(rx: Receiver, **kw: Any) -> CrmConfig:
    """Three attempts 50 ms apart, each given 5 s: an attempt the receiver answered is not
    taken for a timeout on a busy machine and posted again (at least once is the promise:
    such a post is delivered twice, which the exact counts here would read as a fault)."""
    return CrmConfig.model_validate(
        {
            "webhooks": [{"url": rx.url + "/hook", "secret": SECRET, **kw}],
            "webhook_attempts": 3,
            "webhook_backoff_s": 0.05,
            "webhook_timeout_s": 5.0,
        }
    )


async def test_signed_and_retried_until_delivered(db: Database, receiver: Receiver) -> None:
    receiver.fail_first = 2
    bus = EventBus()
    hooks = WebhookDispatcher(db, _config(receiver))
    hooks.attach(bus)
    await hooks.start()
    try:
        bus.publish(CallOffered("1.1", T0, "sales", "Local/100@agents", "agent1", "+8613800138000"))
        await asyncio.wait_for(hooks.flush(), 10)
    finally:
        await hooks.stop()
    assert len(receiver.seen) == 3
    ids = {h["X-CTI-Delivery"] for h, _ in receiver.seen}
    assert len(ids) == 1  # same delivery id on every retry
    headers, body = receiver.seen[-1]
    assert verify(SECRET, headers["X-CTI-Timestamp"], body, headers["X-CTI-Signature"])
    assert not verify(
        "wrong-secret-wrong", headers["X-CTI-Timestamp"], body, headers["X-CTI-Signature"]
    )
    assert not verify(SECRET, headers["X-CTI-Timestamp"], body + b" ", headers["X-CTI-Signature"])
    payload = json.loads(body)
    assert payload["event"] == "call.ringing"
    assert payload["data"]["caller_num"] == "+8613800138000"
    assert hooks.delivered == 1 and await hooks.dead_letters() == []


async def test_dead_letter_visible_to_admin_and_retryable(db: Database, receiver: Receiver) -> None:
    receiver.status = 503
    section = _config(receiver).model_dump(mode="json")
    async with crm_server(db, section) as crm:
        crm.bus.publish(CallAnswered("1.2", T0, "sales", "Local/100@agents", "agent1", 3.5))
        webhooks = crm.feature.services.webhooks  # type: ignore[union-attr]
        await asyncio.wait_for(webhooks.flush(), 10)
        assert len(receiver.seen) == 3
        status, data = await crm.call("admin", "GET", "/api/v1/webhooks/dead-letters")
        assert status == 200
        [dead] = data["dead_letters"]
        assert (dead["event"], dead["attempts"], dead["last_error"]) == (
            "call.answered",
            3,
            "HTTP 503",
        )
        status, _ = await crm.call("sup", "GET", "/api/v1/webhooks/dead-letters")
        assert status == 403
        receiver.status = 200
        status, _ = await crm.call(
            "admin", "POST", f"/api/v1/webhooks/dead-letters/{dead['id']}/retry"
        )
        assert status == 200
        await asyncio.wait_for(webhooks.flush(), 10)
        assert len(receiver.seen) == 4
        assert receiver.seen[-1][0]["X-CTI-Delivery"] == dead["body"]["id"]
        status, data = await crm.call("admin", "GET", "/api/v1/webhooks/dead-letters")
        assert data["dead_letters"] == []


async def test_a_dead_letter_retried_while_the_queue_is_full_stays_and_says_so(
    db: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry the queue cannot take now (full) answers 503, not "no such dead letter",
    and the dead letter stays, for a later retry."""
    receiver.status = 503
    section = _config(receiver).model_dump(mode="json")
    async with crm_server(db, section) as crm:
        crm.bus.publish(CallAnswered("1.3", T0, "sales", "Local/100@agents", "agent1", 1.0))
        webhooks = crm.feature.services.webhooks  # type: ignore[union-attr]
        await asyncio.wait_for(webhooks.flush(), 10)
        [dead] = (await crm.call("admin", "GET", "/api/v1/webhooks/dead-letters"))[1][
            "dead_letters"
        ]
        retry = f"/api/v1/webhooks/dead-letters/{dead['id']}/retry"
        monkeypatch.setattr(webhooks.worker, "submit", lambda delivery: False)  # queue full
        status, answer = await crm.call("admin", "POST", retry)
        assert status == 503 and "full" in answer["error"], answer
        status, data = await crm.call("admin", "GET", "/api/v1/webhooks/dead-letters")
        assert [d["id"] for d in data["dead_letters"]] == [dead["id"]]
        monkeypatch.undo()
        targets = list(webhooks.targets)
        webhooks.targets.clear()  # its receiver removed: it stays too, and that is said
        status, answer = await crm.call("admin", "POST", retry)
        assert (status, answer["code"]) == (404, "no-receiver"), answer
        webhooks.targets[:] = targets
        receiver.status = 200
        assert (await crm.call("admin", "POST", retry))[0] == 200
        await asyncio.wait_for(webhooks.flush(), 10)
        assert receiver.seen[-1][0]["X-CTI-Delivery"] == dead["body"]["id"]
        status, answer = await crm.call("admin", "POST", retry)  # gone now
        assert status == 404, answer


async def test_slow_receiver_never_slows_the_bus(db: Database, receiver: Receiver) -> None:
    receiver.delay_s = 2.0  # longer than the 0.5 s timeout: every attempt times out
    config = _config(receiver).model_copy(
        update={"webhook_queue_size": 5, "webhook_attempts": 1, "webhook_timeout_s": 0.5}
    )
    bus = EventBus()
    hooks = WebhookDispatcher(db, config)
    hooks.attach(bus)
    await hooks.start()
    try:
        started = time.perf_counter()
        for i in range(50):
            bus.publish(CallOffered(f"2.{i}", T0, "q", "Local/1@a", "a", "100"))
        elapsed = time.perf_counter() - started
        assert elapsed < 0.2
        assert hooks.dropped >= 40  # bounded queue: the overflow is dropped and counted
    finally:
        await hooks.stop()


async def test_a_stop_cancels_a_hanging_delivery_and_the_next_start_makes_it(
    db: Database,
) -> None:
    """A receiver that takes the request and never answers: the stop does not wait for
    it (nor for the attempt's timeout) and the delivery is neither delivered nor dead but
    kept; the next start posts it again, same delivery id and body, signed with the
    receiver's secret. A kept delivery whose receiver is gone by then is dead-lettered,
    not posted."""
    seen: list[tuple[dict[str, str], bytes]] = []
    answer, both_in = asyncio.Event(), asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        seen.append((dict(request.headers), await request.read()))
        if len(seen) == 2:
            both_in.set()
        await answer.wait()  # until the test lets it answer
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/gone", hook)
    async with serving(app) as base:
        url, gone = f"{base}/hook", f"{base}/gone"
        config = CrmConfig.model_validate(
            {
                "webhooks": [
                    {"url": url, "secret": SECRET, "events": ["call.ringing"]},
                    {"url": gone, "secret": SECRET, "events": ["lead.assigned"]},
                ],
                "webhook_attempts": 3,
                "webhook_backoff_s": 0.05,
                "webhook_timeout_s": 60,
            }
        )
        try:
            hooks = WebhookDispatcher(db, config)
            await hooks.start()
            hooks.publish("call.ringing", {"linkedid": "3.1"})
            hooks.publish("lead.assigned", {"id": 7})
            await asyncio.wait_for(both_in.wait(), 10)  # both posts in hand, unanswered
            await asyncio.wait_for(hooks.stop(), 3)  # far below the attempt's 60 s timeout
            assert hooks.delivered == 0 and hooks.dead == 0
            assert await hooks.dead_letters() == []

            answer.set()
            config.webhooks[:] = config.webhooks[:1]  # the second receiver was removed
            again = WebhookDispatcher(db, config)
            await again.start()
            try:
                await asyncio.wait_for(again.flush(), 10)
            finally:
                await again.stop()
            assert again.delivered == 1
            [(first, body), (headers, raw)] = [
                x for x in seen if x[0]["X-CTI-Event"] == "call.ringing"
            ]
            assert raw == body and headers["X-CTI-Delivery"] == first["X-CTI-Delivery"]
            assert verify(SECRET, headers["X-CTI-Timestamp"], raw, headers["X-CTI-Signature"])
            assert json.loads(raw)["data"] == {"linkedid": "3.1"}
            assert len(seen) == 3  # the removed receiver's delivery was not posted again...
            [dead] = await again.dead_letters()  # ...but dead-lettered, for an admin to see
            assert (dead["url"], dead["event"], dead["body"]["data"]) == (
                gone,
                "lead.assigned",
                {"id": 7},
            )
            assert "no receiver" in dead["last_error"]
        finally:
            answer.set()


@dataclass
class Moving:
    """A receiver that moves: at ``/old`` it answers 503 (after ``hold`` is set, while it
    holds); ``/new`` takes every delivery."""

    hold: asyncio.Event = field(default_factory=asyncio.Event)
    held: int = 0
    old: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    new: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def at_old(self, request: web.Request) -> web.Response:
        self.old.append((dict(request.headers), await request.read()))
        self.held += 1
        await self.hold.wait()
        return web.Response(status=503)

    async def at_new(self, request: web.Request) -> web.Response:
        self.new.append((dict(request.headers), await request.read()))
        return web.Response(status=200)


@pytest.fixture
async def moving() -> AsyncIterator[tuple[Moving, str]]:
    rx = Moving()
    app = web.Application()
    app.router.add_post("/old", rx.at_old)
    app.router.add_post("/new", rx.at_new)
    async with serving(app) as base:
        try:
            yield rx, base
        finally:
            rx.hold.set()


async def test_deliveries_queued_for_a_receiver_follow_it_to_its_new_url(
    db: Database, moving: tuple[Moving, str]
) -> None:
    """A console receiver's URL is changed while deliveries for it are in hand (a post
    that hangs) and queued: every one of them is posted at the new URL, signed with the
    receiver's secret, none dead-lettered."""
    rx, base = moving
    section = {"webhook_attempts": 3, "webhook_backoff_s": 0.05, "webhook_timeout_s": 30}
    async with crm_server(db, section) as crm:
        status, target = await crm.call(
            "admin", "POST", "/api/v1/webhooks/targets",
            json={"url": f"{base}/old", "secret": SECRET, "events": ["lead.assigned"]},
        )  # fmt: skip
        assert status == 201, target
        webhooks = crm.feature.services.webhooks  # type: ignore[union-attr]
        sent = [webhooks.publish("lead.assigned", {"id": i}) for i in range(6)]
        assert sent == [1] * 6
        for _ in range(200):  # 4 posts in hand at the old URL (CONCURRENCY), 2 queued
            if rx.held >= 4:
                break
            await asyncio.sleep(0.05)
        assert rx.held == 4
        status, changed = await crm.call(
            "admin", "PATCH", f"/api/v1/webhooks/targets/{target['id']}",
            json={"url": f"{base}/new"},
        )  # fmt: skip
        assert status == 200, changed
        rx.hold.set()  # the old URL answers 503 at last: the retries go to the new one
        await asyncio.wait_for(webhooks.flush(), 10)
        assert await webhooks.dead_letters() == []
    assert sorted(json.loads(body)["data"]["id"] for _, body in rx.new) == list(range(6))
    for headers, body in rx.new:
        assert verify(SECRET, headers["X-CTI-Timestamp"], body, headers["X-CTI-Signature"])
    first_posts = {h["X-CTI-Delivery"] for h, _ in rx.old}
    assert first_posts <= {h["X-CTI-Delivery"] for h, _ in rx.new}  # same deliveries


async def test_a_dead_letter_is_retried_to_its_receiver_at_its_new_url(
    db: Database, moving: tuple[Moving, str]
) -> None:
    """A console receiver's dead letters go, when retried, to the receiver at its URL
    now; while it is disabled they stay, and the retry says why."""
    rx, base = moving
    rx.hold.set()  # the old URL answers 503 at once
    section = {"webhook_attempts": 2, "webhook_backoff_s": 0.05, "webhook_timeout_s": 5}
    async with crm_server(db, section) as crm:
        status, target = await crm.call(
            "admin", "POST", "/api/v1/webhooks/targets",
            json={"url": f"{base}/old", "secret": SECRET, "events": ["lead.assigned"]},
        )  # fmt: skip
        assert status == 201, target
        webhooks = crm.feature.services.webhooks  # type: ignore[union-attr]
        assert [webhooks.publish("lead.assigned", {"id": i}) for i in (7, 8)] == [1, 1]
        await asyncio.wait_for(webhooks.flush(), 10)
        dead = (await crm.call("admin", "GET", "/api/v1/webhooks/dead-letters"))[1]["dead_letters"]
        by_lead = {d["body"]["data"]["id"]: d for d in dead}
        assert [(d["url"], d["attempts"]) for d in by_lead.values()] == [(f"{base}/old", 2)] * 2
        path = f"/api/v1/webhooks/targets/{target['id']}"
        assert (await crm.call("admin", "PATCH", path, json={"url": f"{base}/new"}))[0] == 200

        status, answer = await crm.call(
            "admin", "POST", f"/api/v1/webhooks/dead-letters/{by_lead[7]['id']}/retry"
        )
        assert status == 200, answer
        await asyncio.wait_for(webhooks.flush(), 10)
        [(headers, body)] = rx.new
        assert headers["X-CTI-Delivery"] == by_lead[7]["body"]["id"]
        assert verify(SECRET, headers["X-CTI-Timestamp"], body, headers["X-CTI-Signature"])

        assert (await crm.call("admin", "PATCH", path, json={"enabled": False}))[0] == 200
        status, answer = await crm.call(
            "admin", "POST", f"/api/v1/webhooks/dead-letters/{by_lead[8]['id']}/retry"
        )
        assert (status, answer["code"]) == (404, "no-receiver"), answer
        left = (await crm.call("admin", "GET", "/api/v1/webhooks/dead-letters"))[1]
        assert [d["id"] for d in left["dead_letters"]] == [by_lead[8]["id"]]


async def test_a_node_posts_what_a_stop_kept_before_its_journal_had_a_name(
    db: Database, receiver: Receiver
) -> None:
    """A cluster's upgrade: a delivery a stop of the earlier version kept under the bare
    worker name, naming its receiver by URL only, is posted by the first node to start
    (to the receiver at that URL), once."""
    url = receiver.url + "/hook"
    body = json.dumps({"id": "d1", "event": "lead.assigned", "at": "", "data": {"id": 1}})
    kept: PendingStore[Delivery] = PendingStore(db, Delivery)
    await kept.save(WORKER, [Delivery(url, "lead.assigned", body, "d1")])
    for node in ("n1", "n2"):
        hooks = WebhookDispatcher(db, _config(receiver), node=node)
        await hooks.start()
        try:
            await asyncio.wait_for(hooks.flush(), 10)
        finally:
            await hooks.stop()
    [(headers, raw)] = receiver.seen
    assert headers["X-CTI-Delivery"] == "d1" and raw == body.encode()
    assert verify(SECRET, headers["X-CTI-Timestamp"], raw, headers["X-CTI-Signature"])
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(PendingItem)) == 0


async def test_events_filter(db: Database, receiver: Receiver) -> None:
    hooks = WebhookDispatcher(db, _config(receiver, events=["lead.assigned"]))
    assert hooks.publish("call.ringing", {}) == 0
    assert hooks.publish("lead.assigned", {"id": 1}) == 1


async def test_external_lookup_with_timeout_and_cache(receiver: Receiver) -> None:
    ext = ExternalCrmLookup(
        ExternalLookup.model_validate(
            {"url": receiver.url + "/lookup", "timeout_s": 0.3, "cache_ttl_s": 60}
        )
    )
    try:
        card = await ext.lookup("+14155550100")
        assert card is not None and (card.name, card.company) == ("Ext Caller", "Far Inc")
        assert await ext.lookup("+14155550100") == card
        assert len(receiver.seen) == 1  # cached
        assert await ext.lookup("+14155550111") is None
        started = time.perf_counter()
        assert await ext.lookup("+14155550199") is None  # hangs: timed out
        assert time.perf_counter() - started < 1.5
        started = time.perf_counter()
        assert await ext.lookup("+14155550199") is None  # the miss is cached too
        assert time.perf_counter() - started < 0.1
    finally:
        await ext.close()


async def test_directory_falls_back_to_external(db: Database, receiver: Receiver) -> None:
    section = {"external_lookup": {"url": receiver.url + "/lookup", "timeout_s": 1}}
    async with crm_server(db, section) as crm:
        directory = crm.services.customer_directory
        assert directory is not None
        card = await directory.lookup_number("+14155550100")
        assert card is not None and card.name == "Ext Caller" and card.customer_id == 0
        assert await directory.lookup_number("+14155550111") is None
