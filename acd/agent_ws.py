"""The agent's status over the desktop websocket (contracts.md, ACD side).

- command ``{"type": "agent.status", "status", "reason"}``: the connected agent sets its
  own status; reply ``{"type": "agent.status.ok", ...}`` (errors become the hub's
  ``{"type": "error"}`` reply);
- every :class:`AgentStatusChanged` is pushed as ``{"type": "agent.status", "agent",
  "status", "reason", "at"}`` to that agent and to supervisors;
- on (re)connect an agent gets the same message with its current status.
"""

from __future__ import annotations

from typing import Any

from acd import store
from acd.service import AcdService, AgentNotFound, OperationRefused
from cti.ami.actions import AmiActionError
from cti.ami.client import NotConnected
from cti.events import AgentStatusChanged
from cti.store.tokens import Principal
from cti.web.ws import Audience, WsHub

__all__ = ["AgentStatusChannel"]

COMMAND = "agent.status"


def status_message(agent: str, status: str, reason: str, at: str) -> dict[str, Any]:
    return {"type": COMMAND, "agent": agent, "status": status, "reason": reason, "at": at}


class AgentStatusChannel:
    def __init__(self, hub: WsHub, service: AcdService) -> None:
        self.hub = hub
        self.service = service

    def register(self) -> None:
        self.hub.add_command(COMMAND, self.command)
        self.hub.add_snapshot(self.snapshot)

    async def command(self, principal: Principal, frame: dict[str, Any]) -> dict[str, Any]:
        status, reason = frame.get("status"), frame.get("reason", "")
        if not isinstance(status, str) or not isinstance(reason, str):
            raise ValueError("status and reason are strings")
        try:
            agent = await self.service.set_status(principal.name, status, reason, by=principal.name)
        except AgentNotFound:
            raise ValueError("you are not a configured agent") from None
        except OperationRefused as exc:
            raise ValueError(str(exc)) from None
        except (NotConnected, TimeoutError):
            raise ValueError("Asterisk unreachable, status unchanged") from None
        except AmiActionError as exc:
            raise ValueError(f"Asterisk refused: {exc}") from None
        return {
            "type": "agent.status.ok", "agent": principal.name, "status": agent["status"],
            "reason": agent["reason"], "at": agent["status_since"],
        }  # fmt: skip

    async def snapshot(self, principal: Principal) -> list[dict[str, Any]]:
        agent = await store.get_agent(self.service.db, principal.name)
        if agent is None:
            return []
        return [
            status_message(agent["name"], agent["status"], agent["reason"], agent["status_since"])
        ]

    def on_changed(self, event: AgentStatusChanged) -> None:
        self.hub.publish(
            Audience(agents=frozenset({event.agent}), min_role="supervisor"),
            status_message(event.agent, event.status, event.reason, event.at.isoformat()),
        )
