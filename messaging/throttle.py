"""A send rate every node shares: mass sends go out at most ``per_second`` across the
cluster, not per node (issue #18).

Time is cut into slots of ``slot_s`` = max(1 s, 1 / rate); a slot allows
``capacity`` = round(rate x slot_s) sends (at least one). A sender takes a permit by a
conditional UPDATE of the slot's row in the store (``used = used + 1 WHERE used <
capacity``; the row is inserted first if missing, insert-or-ignore), which SQLite's single
writer and PostgreSQL's row lock apply one at a time: of all the nodes' senders, at most
``capacity`` see ``rowcount == 1`` per slot. A full slot waits for the next one. So over
any ``T`` seconds at most ``capacity x (T / slot_s + 1)`` sends are taken, whatever the
number of nodes (a permit taken by a node that then dies is lost: the rate only errs low).
Old slots are deleted now and then.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from sqlalchemy import delete, update

from cti.store.db import Database
from cti.store.insert import insert_ignore
from messaging.models import SendSlot

__all__ = ["SharedRate"]

#: slots older than this are deleted (by whichever node takes a permit every so often)
KEEP_S = 3600.0


class SharedRate:
    def __init__(self, db: Database, scope: str, per_second: float,
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.db = db
        self.scope = scope
        self.slot_s = max(1.0, 1.0 / per_second)
        self.capacity = max(1, round(per_second * self.slot_s))
        self.clock = clock
        self.taken = 0

    def slot_of(self, t: float) -> int:
        return math.floor(t / self.slot_s)

    async def take(self) -> bool:
        """A permit in the current slot, if it has room (never waits)."""
        slot = self.slot_of(self.clock())
        for _ in range(2):  # the slot's row may not exist yet: inserted, then once more
            async with self.db.session() as s, s.begin():
                result = await s.execute(
                    update(SendSlot)
                    .where(SendSlot.scope == self.scope, SendSlot.slot == slot,
                           SendSlot.used < self.capacity)
                    .values(used=SendSlot.used + 1)
                )  # fmt: skip
                if getattr(result, "rowcount", 0) == 1:
                    self.taken += 1
                    if self.taken % 500 == 1:
                        await s.execute(delete(SendSlot).where(
                            SendSlot.scope == self.scope,
                            SendSlot.slot < self.slot_of(self.clock() - KEEP_S)))  # fmt: skip
                    return True
                await s.execute(
                    insert_ignore(s, SendSlot.__table__, ("scope", "slot")).values(
                        scope=self.scope, slot=slot, used=0)
                )  # fmt: skip
        return False

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Wait for a permit (the next slots, as long as needed); False when
        ``stopping`` was set first."""
        while not stopping.is_set():
            if await self.take():
                return True
            wait = (self.slot_of(self.clock()) + 1) * self.slot_s - self.clock()
            try:
                await asyncio.wait_for(stopping.wait(), max(0.01, wait))
            except TimeoutError:
                pass
        return False
