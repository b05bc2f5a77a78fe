"""The ACD as other features read it: :class:`cti.services.QueueService` (queue
thresholds, agents' signed-in time, the live queues, personal owner-first queues).

Offered from the store alone (``AcdFeature.offer``), so commands such as ``cti stats
rebuild`` get the thresholds without the daemon; the daemon attaches the live model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from acd import store
from acd.live import LiveModel
from acd.models import AgentStatusRow
from acd.queues_conf import OWNER_QUEUE_PREFIX
from cti.services import AgentTime, QueueThresholds
from cti.store.db import Database

__all__ = ["AcdQueueService"]


class AcdQueueService:
    def __init__(self, db: Database, live: LiveModel | None = None) -> None:
        self.db = db
        self.live = live

    async def thresholds(self) -> dict[str, QueueThresholds]:
        return {
            q.name: QueueThresholds(q.service_level_s, q.short_abandon_s, q.wrapup_s)
            for q in await store.list_queues(self.db)
        }

    async def agent_time(self, since: datetime, until: datetime) -> dict[str, AgentTime]:
        """Per agent: seconds in status available or paused within [since, until) (open
        periods count up to ``until``), and paused seconds by reason."""
        async with self.db.session() as s:
            periods = (
                await s.execute(
                    select(
                        AgentStatusRow.agent, AgentStatusRow.started_at, AgentStatusRow.ended_at
                    ).where(
                        AgentStatusRow.status.in_(("available", "paused")),
                        AgentStatusRow.started_at < until,
                        func.coalesce(AgentStatusRow.ended_at, until) > since,
                    )
                )
            ).all()
        login: dict[str, float] = {}
        for name, started, ended in periods:
            seconds = (min(ended or until, until) - max(started, since)).total_seconds()
            login[name] = login.get(name, 0.0) + max(0.0, seconds)
        paused = await store.pause_time_by_reason(self.db, since, until) if until > since else {}
        return {
            name: AgentTime(login.get(name, 0.0), tuple(sorted(paused.get(name, {}).items())))
            for name in sorted(set(login) | set(paused))
        }

    def live_queues(self, now: datetime) -> list[dict[str, Any]]:
        return self.live.snapshot(now) if self.live is not None else []

    def is_personal_queue(self, queue: str) -> bool:
        return queue.startswith(OWNER_QUEUE_PREFIX)
