"""A recording's row names its customer even when the lookup is slow (issue #19): the row
is written after at most LOOKUP_TIMEOUT_S without the customer, and gets it when the
lookup ends. The recorder driven through the bus as the call model drives it (a queue
call the dialplan armed, then answered), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

import recordings.control
from cti.ami.client import AmiClient
from cti.bus import EventBus
from cti.events import CallAnswered, CallRecordingArmed, RecordingStarted
from cti.services import CustomerCard, Services
from cti.store.db import Database
from recordings.config import RecordingsConfig
from recordings.control import Recorder
from recordings.models import Recording
from recordings.naming import recording_path
from recordings.processing import Processor
from recordings.store import RecordingStore
from tests.acceptance.harness import wait_for

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)


class SlowDirectory:
    """The customer directory, answering only once ``gate`` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def lookup_number(self, e164: str) -> CustomerCard | None:
        await self.gate.wait()
        return CustomerCard(customer_id=7, name="张伟") if e164 == "+8613800138000" else None

    async def recent_interactions(
        self, customer_id: int, limit: int = 5
    ) -> list[dict[str, object]]:
        return []


async def test_a_slow_lookup_puts_the_customer_on_the_row_when_it_ends(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recordings.control, "LOOKUP_TIMEOUT_S", 0.1)
    config = RecordingsConfig(root=tmp_path)
    store = RecordingStore(db)
    bus = EventBus()
    directory = SlowDirectory()
    ami = AmiClient("127.0.0.1", 1, "nobody", "never-connected")  # the armed path sends nothing
    recorder = Recorder(
        config, store, Processor(config, store), ami, bus,
        services=Services(customer_directory=directory), region="CN",
    )  # fmt: skip
    recorder.attach(bus)
    started: list[RecordingStarted] = []
    bus.subscribe(RecordingStarted, started.append)
    path = recording_path("L-slow", NOW, 0)
    bus.publish(
        CallRecordingArmed("L-slow", NOW, "u-caller", "Local/q@x-1;2", "support", path, "7")
    )
    bus.publish(
        CallAnswered(
            "L-slow", NOW, "support", "Local/101@agents/n", "a101", 1.0,
            caller_uniqueid="u-caller", caller_channel="Local/q@x-1;2",
            agent_uniqueid="u-agent", agent_channel="Local/101@agents-1;1",
            caller_num="13800138000",
        )
    )  # fmt: skip

    async def rows() -> list[Recording]:
        return await store.by_linkedid("L-slow")

    try:
        # the row does not wait for the slow directory: written without the customer
        [row] = await wait_for(rows, timeout=10, what="the recording's row")
        assert (row.status, row.customer_id, row.customer_name) == ("recording", None, "")
        await wait_for(lambda: asyncio.sleep(0, started), timeout=5, what="RecordingStarted")
        directory.gate.set()

        async def named() -> list[Recording]:
            return [r for r in await rows() if r.customer_id is not None]

        [row] = await wait_for(named, timeout=10, what="the customer on the row")
        assert (row.customer_id, row.customer_name, row.path) == (7, "张伟", path)
    finally:
        await recorder.close()
