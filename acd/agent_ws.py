"""The agent's status over the desktop websocket (contracts.md, ACD side).

- command ``{"type": "agent.status", "status", "reason"}``: the connected agent sets its
  own status; reply ``{"type": "agent.status.ok", ...}`` (errors become the hub's
  ``{"type": "error"}`` reply);
- every :class:`AgentStatusChanged` is pushed as ``{"type": "agent.status", "agent",
  "status", "reason", "at"}`` to that agent and to supervisors;
- on (re)connect an agent gets the same message with its current status;
- enforced after-call work (acd.wrapup, decision 0026) is pushed as ``{"type":
  "agent.wrapup", "agent", "linkedid", "queue", "state": "started"|"ended", "until",
  "wrapup_s", "reason", "at"}`` to that agent and supervisors (the desktop counts down
  and asks for the disposition); a reconnect during a wrap-up gets "started" again.
"""

from __future__ import annotations

from typing import Any

from acd import store
from acd.service import AcdService, AgentNotFound, OperationRefused
from cti.ami.actions import AmiActionError
from cti.ami.client import NotConnected
from cti.events import AgentStatusChanged, WrapUpEnded, WrapUpStarted
from cti.store.tokens import Principal
from cti.web.ws import Audience, WsHub

__all__ = ["AgentStatusChannel"]

COMMAND = "agent.status"
WRAPUP = "agent.wrapup"


def status_message(agent: str, status: str, reason: str, at: str) -> dict[str, Any]:
    return {"type": COMMAND, "agent": agent, "status": status, "reason": reason, "at": at}


class AgentStatusChannel:
    def __init__(self, hub: WsHub, service: AcdService) -> None:
        self.hub = hub
        self.service = service
        #: the agents in after-call work now (agent -> its "started" message)
        self.wrapping: dict[str, dict[str, Any]] = {}

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
        out = [
            status_message(agent["name"], agent["status"], agent["reason"], agent["status_since"])
        ]
        wrapping = self.wrapping.get(agent["name"])
        return [*out, wrapping] if wrapping is not None else out

    def on_wrapup(self, event: WrapUpStarted | WrapUpEnded) -> None:
        started = isinstance(event, WrapUpStarted)
        msg: dict[str, Any] = {
            "type": WRAPUP, "agent": event.agent, "linkedid": event.linkedid,
            "queue": event.queue, "state": "started" if started else "ended",
            "at": event.at.isoformat(),
            "until": event.until.isoformat() if isinstance(event, WrapUpStarted) else None,
            "wrapup_s": None if isinstance(event, WrapUpStarted) else round(event.wrapup_s, 3),
            "reason": "" if isinstance(event, WrapUpStarted) else event.reason,
        }  # fmt: skip
        if started:
            self.wrapping[event.agent] = msg
        else:
            self.wrapping.pop(event.agent, None)
        self.hub.publish(Audience(agents=frozenset({event.agent}), min_role="supervisor"), msg)

    def on_changed(self, event: AgentStatusChanged) -> None:
        self.hub.publish(
            Audience(agents=frozenset({event.agent}), min_role="supervisor"),
            status_message(event.agent, event.status, event.reason, event.at.isoformat()),
        )
