"""The one place the ACD publishes domain events (wazo-calld style notifier)."""

from __future__ import annotations

from datetime import datetime

from cti.bus import EventBus
from cti.events import AgentStatusChanged

__all__ = ["AcdNotifier"]


class AcdNotifier:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def agent_status_changed(self, agent: str, at: datetime, status: str, reason: str) -> None:
        self._bus.publish(AgentStatusChanged(agent=agent, at=at, status=status, reason=reason))
