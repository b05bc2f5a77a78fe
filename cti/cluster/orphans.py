"""A dead node's journal is adopted by a live node (decision 0035, "A node that dies").

A worker with a journal (:mod:`cti.worker`) keeps its items in the shared store under
``<worker>@<node>`` (``keep_as``). A node that dies for good (hardware) would leave them
there until a node with its name starts. Each node runs a :class:`JournalOwner` per such
worker; liveness is the cluster's own, PostgreSQL session advisory locks
(:class:`cti.cluster.locks.NamedLocks`, the lease's keepalive settings):

- **A node owns its keep** while it runs: it holds the lock ``journal:<keep>`` from
  before its start reads its rows (:meth:`JournalOwner.claim`) until its stop has written
  its last rows, confirmed every ``every_s``. The process dies: PostgreSQL ends its
  session and frees the lock at once (a host gone without a reset: after
  :func:`cti.cluster.lease.release_after_s`).
- **A dead node's keep is adopted**: every ``every_s`` a node that holds its own keep
  lists the worker's other keeps with rows (``<worker>@*``) and asks whether each one's
  lock is free (:meth:`NamedLocks.free`: a shared lock, so two survivors asking at once
  do not take each other for the owner). One found free at two looks ``grace_s`` apart
  (and at every look between) is dead: :meth:`cti.worker.QueueWorker.adopt` moves its
  rows to this node's keep in one transaction that first takes that lock for the
  transaction (``pg_try_advisory_xact_lock``) and then runs ``UPDATE worker_pending SET
  worker = <own keep> WHERE worker = <dead keep>``: if the owner holds the lock again,
  nothing moves.
- **Exactly once between adopters**: two survivors adopting at the same moment each
  move only rows still under the dead name; PostgreSQL re-checks that condition on a row
  the other changed, so every row moves once (and one of them usually finds the lock
  taken by the other's transaction, and tries again at its next look).
- **A dead node that comes back** claims its lock before it reads its rows: while an
  adoption's transaction holds the lock it waits, and after it finds only what was not
  moved (the rows beyond the adopter's queue room, which are then its own again). It
  never replays what a survivor took.
- **A node stopped** (SIGTERM) lets its lock go after its stop's last write: what it kept
  is adopted like a dead node's when it stays down longer than ``grace_s`` (a restart
  within that takes its own back). Its items are in the store only, so nothing is
  handled twice.

The window that remains:

- A node that is alive but cut off from PostgreSQL (or whose lock session PostgreSQL
  ended: a server restart, ``pg_terminate_backend``) for longer than ``grace_s`` plus the
  time PostgreSQL takes to end its session is taken for dead: its rows are adopted while
  it still holds those items in memory, and both nodes may handle them (for webhooks,
  the same ``X-CTI-Delivery`` posted twice: the at-least-once receivers already
  de-duplicate). It is not a loss: what it handles it deletes by row id, wherever the row
  is now. ``grace_s`` (``ADOPT_AFTER_S``, 10 s) is well above a node's own re-claim after
  a server restart (``every_s``).
- A dead node's items wait ``grace_s`` plus up to ``every_s`` (plus the session's end for
  a host gone silently) before a survivor takes them; what it had not journaled yet (its
  last ``journal_s``) is lost with it, as after any crash.
- A node that cannot claim its own keep at start within ``claim_s`` (another process with
  its name holds it, or PostgreSQL did not answer) starts without reading its rows
  (logged at ERROR); its loop keeps trying, and once it holds the lock it reads the rows
  older than the first its own run wrote (those of the other process written after that
  wait for its next start).

One node (SQLite, no broker): no owner, no adoption; the node's keep is its own.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cti.cluster.lease import release_after_s
from cti.cluster.locks import NamedLocks, lock_key
from cti.pending import PendingStore
from cti.worker import QueueWorker

__all__ = ["ADOPT_AFTER_S", "JournalOwner", "journal_lock"]

log = logging.getLogger(__name__)

#: how long a keep's lock must be seen free before its rows are adopted
ADOPT_AFTER_S = 10.0
#: how often the owner confirms its own lock and looks for dead keeps
EVERY_S = 2.0


def journal_lock(keep: str) -> str:
    """The name of the lock its owner holds on ``keep`` (:class:`NamedLocks`)."""
    return f"journal:{keep}"


class JournalOwner:
    def __init__(
        self,
        locks: NamedLocks,
        worker: QueueWorker[Any],
        store: PendingStore[Any],
        *,
        keep: str,
        prefix: str,
        grace_s: float = ADOPT_AFTER_S,
        every_s: float = EVERY_S,
    ) -> None:
        """``keep``: this node's (the worker's ``keep_as``); ``prefix``: what the keeps of
        the same worker on other nodes start with (``"<worker>@"``)."""
        self.locks = locks
        self.worker = worker
        self.store = store
        self.keep = keep
        self.prefix = prefix
        self.grace_s = grace_s
        self.every_s = every_s
        self._free_since: dict[str, float] = {}
        #: whether this node's own rows were read (at :meth:`claim`, else at a round)
        self.claimed = False
        #: how long :meth:`claim` waits: a session of a process of this name that died
        #: silently ends within this
        self.claim_s = release_after_s(locks.timeout_s, locks.check_s) + 2 * every_s
        self._failing = False  # a round failed: logged once until one succeeds
        self._held = True  # this node's journal held at the last look (logged when not)

    async def claim(self) -> bool:
        """Hold this node's keep, at start before its rows are read; False, logged, if it
        could not within :attr:`claim_s` (the rows are read once a round holds it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.claim_s
        while not await self.locks.hold(journal_lock(self.keep)):
            if loop.time() >= deadline:
                log.error("%s: another session holds this node's journal (or PostgreSQL "
                          "does not answer); its rows are read once it holds it",
                          self.keep)  # fmt: skip
                return False
            await asyncio.sleep(min(self.every_s, 0.25))
        self.claimed = True
        return True

    async def run(self) -> None:
        """Confirm this node's keep and adopt dead ones every ``every_s``, until cancelled."""
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.round()
            except Exception:  # the store or PostgreSQL away: the next round tries again
                if not self._failing:
                    log.exception("%s: looking for dead nodes' journals failed", self.keep)
                self._failing = True
            else:
                self._failing = False

    async def round(self) -> int:
        """One look: how many rows were adopted."""
        held = await self.locks.hold(journal_lock(self.keep))
        if held != self._held:
            self._held = held
            log.warning("%s: this node %s its journal", self.keep,
                        "holds" if held else "does not hold")  # fmt: skip
        if not held:
            return 0
        if not self.claimed:  # not held at start: its own rows from before, first (once)
            self.claimed = True
            await self.worker.resume()
        now = asyncio.get_running_loop().time()
        keeps = [k for k in await self.store.keeps(self.prefix) if k != self.keep]
        for gone in set(self._free_since) - set(keeps):
            del self._free_since[gone]
        moved = 0
        for keep in keeps:
            name = journal_lock(keep)
            if not await self.locks.free(name):  # its owner is alive
                self._free_since.pop(keep, None)
                continue
            since = self._free_since.setdefault(keep, now)
            if now - since < self.grace_s:
                continue
            n = await self.worker.adopt(keep, guard=lock_key(name))  # logged there
            if n:
                log.info("%s: %s's lock free for %.1f s", self.keep, keep, now - since)
            moved += n
        return moved
