"""The daemon's CPU priority (issue #19, decision 0027).

A pop is made on the daemon's one event-loop thread. On a host it shares with Asterisk,
the kernel shares the CPU thread by thread: in a burst Asterisk has dozens of runnable
threads, and the loop, runnable, waited on the run queue as long as it ran (measured:
2.7 s waiting against 2.4 s running over a 7.6 s burst of 200 calls), so every pop was late
by that queue, not by its own work. ``cti run`` therefore starts at ``[daemon] nice``
(default -5: a weight about three times a default thread's) when the process may:

- :func:`set_nice` applies it to the calling thread before the daemon starts any other,
  and Linux threads (and the processes they start) inherit their creator's niceness, so
  the whole daemon runs at it; the transcoding threads step 10 nicer from there
  (``recordings.processing.TRANSCODE_NICE``);
- lowering niceness needs root or ``CAP_SYS_NICE``: without it the daemon keeps the
  niceness it was started with and says so once (the systemd unit sets ``Nice=-5``,
  which systemd applies before it drops to the service's user);
- a process already at or below the wanted value is left as it is (a supervisor's
  choice stands); a higher value (``nice = 5``) is always allowed.

Guarantee: never fails the start; only the calling thread is changed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

__all__ = ["NICE_MAX", "NICE_MIN", "Outcome", "set_nice"]

NICE_MIN, NICE_MAX = -20, 19


@dataclass(frozen=True)
class Outcome:
    """What :func:`set_nice` did: the niceness before and after, and why it kept it."""

    wanted: int
    before: int
    after: int
    refused: str = ""  # the OS's reason when lowering was not permitted

    def describe(self) -> str:
        if self.refused:
            return (
                f"running at nice {self.after}, not {self.wanted}: {self.refused} (run as "
                "root, with CAP_SYS_NICE, or set Nice= in the service: decision 0027)"
            )
        if self.before == self.after:
            return f"running at nice {self.after}"
        return f"running at nice {self.after} (was {self.before})"


def set_nice(wanted: int) -> Outcome:
    """Set the calling thread's niceness to ``wanted`` unless it is already at or below it
    (a higher value is always set). Never raises for a refusal: see :class:`Outcome`."""
    if not NICE_MIN <= wanted <= NICE_MAX:
        raise ValueError(f"nice must be between {NICE_MIN} and {NICE_MAX}, not {wanted}")
    tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, tid)
    if before == wanted or (wanted < 0 and before <= wanted):
        return Outcome(wanted, before, before)
    try:
        os.setpriority(os.PRIO_PROCESS, tid, wanted)
    except PermissionError as exc:
        return Outcome(
            wanted, before, os.getpriority(os.PRIO_PROCESS, tid), exc.strerror or str(exc)
        )
    return Outcome(wanted, before, os.getpriority(os.PRIO_PROCESS, tid))
