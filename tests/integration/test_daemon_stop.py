"""A graceful stop (SIGTERM) loses no accepted work: the daemon stops taking AMI events,
ends the calls still open (their records published), and only then drains the features'
queue workers and the recorder, before it closes the store (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from crm_bridge.feature import CrmFeature
from crm_bridge.models import Interaction
from cti.ami.protocol import AmiParser, Message
from cti.config import AgiConfig, AmiConfig, AsteriskConfig, DatabaseConfig, HttpConfig, Settings
from cti.daemon import Daemon
from cti.store.db import Database
from cti.store.models import Call as CallRow
from tests.acceptance.harness import free_port

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"


def ended_call(name: str) -> list[Message]:
    """The AMI events of a recorded call: it has hung up, and the model waits a moment
    for late events before it finalises the call (close grace)."""
    parser = AmiParser()
    parser.receive_data((FIXTURES / name).read_bytes())
    parser.receive_eof()
    events = [
        m for m in parser.events_received()
        if isinstance(m, Message) and m.event and not m.action_id and m.get("Linkedid")
    ]  # fmt: skip
    return events


async def test_calls_open_at_stop_reach_every_feature(
    db_url: str, migrated_db: None, tmp_path: Path
) -> None:
    settings = Settings(
        ami=AmiConfig(port=free_port(), secret="x", reconnect_max_s=5.0),  # no Asterisk here
        asterisk=AsteriskConfig(log_dir=tmp_path),
        database=DatabaseConfig(url=db_url),
        http=HttpConfig(port=0),
        agi=AgiConfig(port=0),
    )
    crm = CrmFeature()
    d = Daemon(settings, features=[crm])
    await d.start()
    messages = ended_call("queue_answered.raw")
    for msg in messages:
        d._on_ami_event(msg)
    linkedid = messages[0]["Linkedid"]
    assert d.model.calls  # not final yet when the stop begins
    assert crm.writer is not None
    await crm.writer.flush()  # the call's offers are written (the store is quiet)
    await d.stop()

    db = Database.from_url(db_url)
    try:
        async with db.session() as s:
            call = await s.scalar(select(CallRow).where(CallRow.linkedid == linkedid))
            inter = await s.scalar(select(Interaction).where(Interaction.linkedid == linkedid))
    finally:
        await db.dispose()
    assert call is not None  # the core recorder had it
    assert inter is not None and inter.ended_at is not None  # and so had crm_bridge's writer
    assert inter.outcome == call.disposition
