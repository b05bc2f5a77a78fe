"""The live queues of every Asterisk server of a cluster, for the wallboard of any node.

Each node's ACD live model (callers waiting, members and their states) is fed by the
Asterisk server that node drives, and by nothing else. In a cluster the driver of each
server publishes its model as :class:`cti.events.ServerLiveState` (keyed by the server's
name, on every change, coalesced, and at least every ``tail_interval_s``); every node
keeps the newest state per server in a :class:`ServerBoard` and the wallboard shows
:meth:`ServerBoard.merged`.

Guarantees:

- **One state per server**: a newer state of a server replaces the older one, whichever
  node published it (the driver that took the server over replaces the dead one's); an
  older state (by its ``at``) never replaces a newer one.
- **Expiry**: a state older than its ``ttl_s`` (by the receiving node's clock, counted
  from when it was received, and from its ``at`` when that is older: a state replayed by
  the broker after a node was away is not shown) is left out; a driver that lets go of
  its server publishes a state with ``live=False`` that removes it at once. A dead driver's
  state goes within ``ttl_s``, or sooner when its replacement publishes.
- **The node's own server** is taken from its own live model while it drives (no delay),
  never from the broker's copy.
- **Merge**: per queue, every server's waiting callers (their waits aged by the state's
  age) and members; an agent who is a member on several servers is shown once, in the
  busiest of their states (talking > on hold > ringing > wrap-up > idle), with the server
  that state comes from. Per queue ``servers`` holds each server's own figures
  (waiting, longest wait, members by state). I/O-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cti.events import ServerLiveState

__all__ = ["STATE_RANK", "ServerBoard", "merge_servers"]

#: The busier state wins when one agent is a member on several servers.
STATE_RANK = {"on_call": 4, "on_hold": 3, "ringing": 2, "wrapup": 1, "idle": 0}


@dataclass(slots=True)
class _Held:
    state: ServerLiveState
    received_at: datetime


class ServerBoard:
    def __init__(self) -> None:
        self._states: dict[str, _Held] = {}

    def put(self, state: ServerLiveState, now: datetime) -> bool:
        """Keep ``state`` (received ``now``) unless a newer one of its server is held;
        True if the board changed."""
        held = self._states.get(state.server)
        if held is not None and held.state.at > state.at:
            return False
        if not state.live:
            return self._states.pop(state.server, None) is not None
        self._states[state.server] = _Held(state, now)
        return True

    def servers(self, now: datetime) -> dict[str, ServerLiveState]:
        """The states not expired at ``now``, by server (expired ones are forgotten)."""
        out: dict[str, ServerLiveState] = {}
        for server, held in list(self._states.items()):
            since = min(held.received_at, held.state.at)
            if (now - since).total_seconds() > held.state.ttl_s:
                del self._states[server]
            else:
                out[server] = held.state
        return out

    def merged(
        self, now: datetime, own_server: str = "", own: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Every server's live queues merged; ``own``: the live model of ``own_server``
        when this node drives it (it replaces the broker's copy)."""
        parts: list[tuple[str, Iterable[Mapping[str, Any]], float]] = []
        for server, state in sorted(self.servers(now).items()):
            if own is not None and server == own_server:
                continue
            age = max(0.0, (now - state.at).total_seconds())
            parts.append((server, state.queues, age))
        if own is not None:
            parts.append((own_server, own, 0.0))
        return merge_servers(parts)


def merge_servers(
    parts: Iterable[tuple[str, Iterable[Mapping[str, Any]], float]],
) -> list[dict[str, Any]]:
    """``parts``: (server, its live queues as ``QueueService.live_queues`` gives them, how
    old they are in seconds). The result has the same shape, plus ``server`` on each entry
    and member and ``servers`` on each queue."""
    queues: dict[str, dict[str, Any]] = {}
    members: dict[str, dict[str, dict[str, Any]]] = {}
    for server, live, age in parts:
        for q in live:
            name = str(q.get("name", ""))
            out = queues.setdefault(
                name,
                {"name": name, "strategy": q.get("strategy", ""), "members": [], "entries": [],
                 "completed": 0, "abandoned": 0, "servers": {}},
            )  # fmt: skip
            entries = [
                {**e, "server": server, "wait_s": round(float(e.get("wait_s") or 0.0) + age, 1)}
                for e in q.get("entries", [])
            ]  # fmt: skip
            out["entries"].extend(entries)
            out["completed"] += int(q.get("completed") or 0)
            out["abandoned"] += int(q.get("abandoned") or 0)
            states: dict[str, int] = {}
            for m in q.get("members", []):
                state = str(m.get("state", "idle"))
                states[state] = states.get(state, 0) + 1
                who = str(m.get("name") or m.get("interface") or "")
                mine = members.setdefault(name, {})
                before = mine.get(who)
                if before is None or STATE_RANK.get(state, 0) > STATE_RANK.get(
                    str(before.get("state")), 0
                ):
                    mine[who] = {**m, "server": server}
            out["servers"][server] = {
                "waiting": len(entries),
                "longest_wait_s": max((float(e["wait_s"]) for e in entries), default=0.0),
                "states": states,
            }
    for name, q in queues.items():
        q["entries"].sort(key=lambda e: -float(e["wait_s"]))
        q["members"] = [m for _, m in sorted(members.get(name, {}).items())]
    return [queues[n] for n in sorted(queues)]
