"""The one place the desktop feature publishes: ScreenPop on the bus, pops and card updates
to the agent's websocket connections (never to anyone else's)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cti.bus import EventBus
from cti.events import ScreenPop
from cti.web.ws import WsHub, to_agent

__all__ = ["DesktopNotifier"]


class DesktopNotifier:
    def __init__(self, bus: EventBus, hub: WsHub) -> None:
        self._bus = bus
        self._hub = hub
        self.pops_sent = 0
        self.updates_sent = 0

    def pop(self, agent: str, linkedid: str, at: datetime, message: dict[str, Any]) -> None:
        """Deliver a pop to ``agent`` first (the latency that matters), then tell the bus."""
        self._hub.publish(to_agent(agent), message)
        self.pops_sent += 1
        # a copy: the service keeps updating its own card (state, customer) afterwards
        self._bus.publish(ScreenPop(agent=agent, linkedid=linkedid, at=at, payload=dict(message)))

    def update(self, agent: str, message: dict[str, Any]) -> None:
        """A ``call.update`` of a card the agent already has."""
        self._hub.publish(to_agent(agent), message)
        self.updates_sent += 1
