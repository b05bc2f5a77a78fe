"""The one place the ACD publishes domain events (wazo-calld style notifier)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cti.bus import EventBus
from cti.events import AgentStatusChanged, CallbackOffered, DomainEvent, OutboundCallStarted

__all__ = ["AcdNotifier"]


class AcdNotifier:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def publish(self, event: DomainEvent) -> None:
        self._bus.publish(event)

    def agent_status_changed(self, agent: str, at: datetime, status: str, reason: str) -> None:
        self._bus.publish(AgentStatusChanged(agent=agent, at=at, status=status, reason=reason))

    def callback_offered(self, agent: str, at: datetime, callback: Mapping[str, Any]) -> None:
        self._bus.publish(
            CallbackOffered(
                agent=agent, at=at, callback_id=int(callback["id"]),
                linkedid=str(callback["linkedid"]), number=str(callback["number"]),
                queue=str(callback["queue"]),
            )
        )  # fmt: skip

    def outbound_started(
        self, agent: str, at: datetime, linkedid: str, number: str, kind: str,
        callback_id: int | None = None,
    ) -> None:  # fmt: skip
        self._bus.publish(
            OutboundCallStarted(
                agent=agent, at=at, linkedid=linkedid, number=number, kind=kind,
                callback_id=callback_id,
            )
        )  # fmt: skip
