"""Event bus for domain events.

Dispatch is synchronous and in publish order: a handler must be quick and must not block.
A handler that needs I/O hands the event to its own queue/worker (see
``cti.calls.recorder``), so a slow consumer never delays the others and the bus never
creates unbounded tasks. A failing handler is logged and the others still run.

One node or several: :class:`EventBus` is the in-process bus (the single-box default).
In a cluster (``[cluster] broker_url``, :mod:`cti.cluster.natsbus`) the same interface
also carries every event to the other nodes. A handler says which events it wants:

- ``subscribe(T, h)`` (default): the events of **this node** only. Whatever writes the
  store or acts on the node's own Asterisk (call rows, statistics, recordings, webhooks)
  subscribes this way, so it acts exactly once in the cluster, on the node that saw it.
- ``subscribe(T, h, remote=True)``: the events of **every node** (its own included), for
  what serves the clients connected to this node (a desktop's pop, a wallboard), whichever
  node's Asterisk the call is on. Only the types of :data:`cti.events.SHARED_EVENTS` cross
  nodes, so only those can be asked for this way (anything else is refused at once).

On a single node both are the same.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from cti.events import SHARED_EVENTS, DomainEvent

log = logging.getLogger(__name__)

E = TypeVar("E", bound=DomainEvent)
Handler = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        # event type -> [(handler, wants other nodes' events)]
        self._handlers: dict[type[DomainEvent], list[tuple[Handler, bool]]] = defaultdict(list)

    def subscribe(
        self, event_type: type[E], handler: Callable[[E], None], *, remote: bool = False
    ) -> Callable[[], None]:
        """Call ``handler`` for every published ``event_type`` (exact type): this node's
        events, and with ``remote`` the other nodes' too (a type of
        :data:`~cti.events.SHARED_EVENTS`: no other crosses nodes). Returns an unsubscribe
        function."""
        if remote and event_type not in SHARED_EVENTS:
            raise ValueError(
                f"{event_type.__name__} does not cross nodes: other nodes' events of it never "
                "arrive (add it to cti.events.SHARED_EVENTS if every node needs it)"
            )
        entry = (handler, remote)
        self._handlers[event_type].append(entry)

        def unsubscribe() -> None:
            handlers = self._handlers.get(event_type, [])
            if entry in handlers:
                handlers.remove(entry)

        return unsubscribe

    def publish(self, event: DomainEvent) -> None:
        """An event of this node: to every handler of its type."""
        self._dispatch(event, remote_only=False)

    def deliver_remote(self, event: DomainEvent) -> None:
        """An event another node published: to the handlers that asked for them."""
        self._dispatch(event, remote_only=True)

    def _dispatch(self, event: DomainEvent, *, remote_only: bool) -> None:
        for handler, remote in tuple(self._handlers.get(type(event), ())):
            if remote_only and not remote:
                continue
            try:
                handler(event)
            except Exception:
                log.exception("bus handler %r failed on %s", handler, type(event).__name__)

    async def start(self) -> None:
        """Connect to the broker (nothing to do in-process)."""

    async def close(self) -> None:
        """Send what is buffered and disconnect (nothing to do in-process)."""

    def health(self) -> dict[str, object]:
        return {"kind": "in-process"}
