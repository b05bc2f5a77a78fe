"""Keep Python's cyclic garbage collector from stalling the event loop (decision 0027).

A full (generation 2) collection walks every object the process holds, on the event
loop's thread: in a daemon with everything loaded and 500 desktops connected it paused
the loop for 0.6 to 1.4 s in the middle of a burst of calls, and no pop left and no
recording started meanwhile. So, in ``cti run`` (:class:`GcPolicy`):

- before the daemon starts serving, what loading it built (every feature's modules) is
  collected once and frozen (``gc.freeze``: the collector never walks it again; it lives
  as long as the process anyway); done after the start instead, it stalled the loop of a
  node already serving (a standby that joined a cluster: seconds on a loaded machine);
- automatic full collections are off (``gc.set_threshold`` with a huge third
  threshold); the young generations are collected as usual (cheap: they hold only what
  was made lately);
- full collections run from :meth:`GcPolicy.run` instead: when no call is in progress
  and the last one is ``QUIET_EVERY_S`` old, or regardless after ``FORCE_EVERY_S`` (a
  busy call center still frees its cycles, with one pause an hour at most);
- a collection that pauses the loop for more than ``SLOW_MS`` is logged.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["FORCE_EVERY_S", "QUIET_EVERY_S", "SLOW_MS", "GcPolicy"]

log = logging.getLogger(__name__)

SLOW_MS = 50.0
QUIET_EVERY_S = 600.0
FORCE_EVERY_S = 3600.0
CHECK_EVERY_S = 15.0
NO_AUTOMATIC_FULL = 1_000_000


class GcPolicy:
    def __init__(self, quiet: Callable[[], bool]) -> None:
        self.quiet = quiet
        self._started = 0.0
        self.last_full = time.monotonic()
        self.full_collections = 0

    def _watch(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._started) * 1000
        if ms > SLOW_MS:
            log.warning(
                "garbage collection paused the event loop %.0f ms (generation %s)",
                ms, info.get("generation"),
            )  # fmt: skip

    def install(self) -> None:
        """Collect and freeze what is alive (before serving); full collections only from
        run()."""
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, NO_AUTOMATIC_FULL)
        if self._watch not in gc.callbacks:
            gc.callbacks.append(self._watch)
        self.last_full = time.monotonic()

    def collect_if_due(self) -> bool:
        age = time.monotonic() - self.last_full
        if age < FORCE_EVERY_S and not (age >= QUIET_EVERY_S and self.quiet()):
            return False
        gc.collect()
        self.last_full = time.monotonic()
        self.full_collections += 1
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            self.collect_if_due()
