"""When the daemon gives a caller back to the agent whose browser phone dropped
(decision 0023): the ordering of "the leg dropped" and "the phone registered again".

Both arrive as domain events, in either order: a reloaded page may register its phone
(PhoneRegistered, from the phones feature's ContactStatus) before Asterisk notices that
the old leg is gone (CallLegEnded: a BYE, or ``rtp_timeout`` seconds without RTP), or
after. Guarantees:

- a dropped call is reconnected when the phone whose leg dropped gains a contact; a
  registration seen first is remembered for :data:`MEMORY_S` (longer than
  ``rtp_timeout``) and used by the drop that follows, once — only if it came after the
  dropped leg answered (the registration that leg was made on is no return: ringing a
  phone whose contact is gone sends the caller to the queue at once);
- a phone that registers while no call of it is dropped does nothing (beyond being
  remembered for that while);
- at most one reconnect runs per call (:attr:`LiveCall.reconnecting`; call control
  marks it before its first AMI action, so a second trigger — the page's own request —
  does not ring the phone twice or redirect the caller again);
- a call whose grace period ended (the caller is back in a queue: CallQueued) is no
  longer dropped and is not reconnected.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta

from callcontrol.calls import LiveCall, LiveCalls
from cti.events import PhoneRegistered

__all__ = ["MEMORY_S", "Rejoins"]

#: how long a registration waits for the drop it may belong to (rtp_timeout is 10 s)
MEMORY_S = 20.0


class Rejoins:
    def __init__(self, calls: LiveCalls, memory_s: float = MEMORY_S, limit: int = 1000) -> None:
        self.calls = calls
        self.memory = timedelta(seconds=memory_s)
        self.limit = limit
        self._seen: OrderedDict[str, datetime] = OrderedDict()  # phone -> registered at

    def registered(self, event: PhoneRegistered) -> list[LiveCall]:
        """The calls to reconnect now that ``event.phone`` registered (none: remembered)."""
        due = [
            c for c in self.calls.calls.values()
            if c.dropped and not c.reconnecting and c.lost_phone == event.phone
        ]  # fmt: skip
        if due:
            self._seen.pop(event.phone, None)
            return due
        self._seen[event.phone] = event.at
        self._seen.move_to_end(event.phone)
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return []

    def dropped(self, call: LiveCall, at: datetime) -> bool:
        """Whether ``call``, whose leg just dropped at ``at``, is to be reconnected now:
        its phone registered again shortly before (used once)."""
        if not call.dropped or call.reconnecting or not call.lost_phone:
            return False
        seen = self._seen.get(call.lost_phone)
        if seen is None:
            return False
        del self._seen[call.lost_phone]
        if call.leg_at is not None and seen <= call.leg_at:
            return False  # the registration the dropped leg was made on, not a return
        return abs(at - seen) <= self.memory
