"""How many calls to start now: preview, progressive and predictive pacing (pure: the
time is always passed in, no I/O, no clock; the dialer and bench/dialer.py drive it).

- **preview**: never dials by itself (the agent dials or skips the lead shown).
- **progressive**: one call per free agent: lines in flight = free agents.
- **predictive**: dials ahead, from the measured answer rate ``p`` and talk time: the
  agents expected free within a ring time (``free`` now, plus each busy agent with the
  chance it finishes meanwhile, talk time taken as exponential) divided by ``p``, scaled
  by an *aggressiveness* ``a`` in [0, 1] (0 = progressive). ``a`` is a feedback loop:
  every abandoned (dropped) call lowers it by ``step_down``, every call connected to an
  agent raises it by ``step_down * target * cap`` (so it settles near the ``target`` abandon
  rate, half the cap by default).

The **cap is hard**: over the rolling window (default one hour) the abandon rate is
abandoned / answered-by-a-person; predictive dials ahead only while the window has room
for one more dropped call (``abandoned + 1 ≤ cap * answered``); otherwise it dials like
progressive (which drops nothing: each call has its agent). Until enough calls were
answered in the window (33 at 3 %), predictive is progressive.

In a cluster a campaign has one pacer per Asterisk server, each measuring its own calls;
the cap is the campaign's, so each pacer is given the campaign-wide window from the store
(:meth:`Pacer.share_window`: calls connected and dropped on every server) and takes room
for a dropped call only when the whole campaign has it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Pacer", "PacingConfig"]


@dataclass(frozen=True)
class PacingConfig:
    mode: str = "progressive"  # preview | progressive | predictive
    abandon_cap: float = 0.03
    window_s: float = 3600.0
    max_ratio: float = 3.0  # at most this many lines per agent expected free
    ring_s: float = 20.0  # the time a dialled call takes to be answered, roughly
    prior_answer_rate: float = 0.3  # until measured
    prior_talk_s: float = 120.0
    min_samples: int = 20  # dials before the answer rate is trusted
    step_down: float = 0.15
    target: float = 0.5  # share of the cap aimed at


@dataclass
class Pacer:
    config: PacingConfig = field(default_factory=PacingConfig)
    aggressiveness: float = 0.5
    # rolling records: (time, answered by a person?) per finished dial; (time, abandoned?)
    # per answered call; talk durations
    _dials: deque[tuple[float, bool]] = field(default_factory=deque)
    _answers: deque[tuple[float, bool]] = field(default_factory=deque)
    _talks: deque[tuple[float, float]] = field(default_factory=deque)
    #: (answered by a person, dropped) over the window on every pacer of the campaign
    shared: tuple[int, int] | None = None

    # --- what happened -------------------------------------------------------------------
    def dial_ended(self, now: float, *, answered: bool) -> None:
        """A dialled call ended ringing: answered by a person, or not (busy, no answer,
        failed, machine)."""
        self._dials.append((now, answered))
        self._trim(now)

    def connected(self, now: float) -> None:
        """An answered call reached an agent."""
        self._answers.append((now, False))
        step = self.config.step_down * self.config.target * self.config.abandon_cap
        self.aggressiveness = min(1.0, self.aggressiveness + step)
        self._trim(now)

    def abandoned(self, now: float) -> None:
        """An answered call found no agent: it heard the message and was dropped."""
        self._answers.append((now, True))
        self.aggressiveness = max(0.0, self.aggressiveness - self.config.step_down)
        self._trim(now)

    def talked(self, now: float, seconds: float) -> None:
        self._talks.append((now, seconds))
        self._trim(now)

    def _trim(self, now: float) -> None:
        edge = now - self.config.window_s
        for q in (self._dials, self._answers, self._talks):
            while q and q[0][0] < edge:
                q.popleft()

    # --- measures ------------------------------------------------------------------------
    def answer_rate(self) -> float:
        if len(self._dials) < self.config.min_samples:
            return self.config.prior_answer_rate
        return max(0.02, sum(1 for _, a in self._dials if a) / len(self._dials))

    def talk_s(self) -> float:
        if not self._talks:
            return self.config.prior_talk_s
        return max(1.0, sum(s for _, s in self._talks) / len(self._talks))

    def abandon_rate(self, now: float) -> float:
        self._trim(now)
        answered = len(self._answers)
        return 0.0 if not answered else sum(1 for _, a in self._answers if a) / answered

    def share_window(self, connected: int, dropped: int) -> None:
        """The campaign's window on every pacer (a cluster): ``connected`` calls reached
        an agent, ``dropped`` were abandoned; the cap is kept on these."""
        self.shared = (connected + dropped, dropped)

    def room_for_abandon(self, now: float) -> bool:
        """The window can take one more dropped call and stay within the cap (the
        campaign's whole window when shared, else this pacer's)."""
        self._trim(now)
        answered = len(self._answers)
        dropped = sum(1 for _, a in self._answers if a)
        if self.shared is not None:
            answered, dropped = max(answered, self.shared[0]), max(dropped, self.shared[1])
        return dropped + 1 <= self.config.abandon_cap * answered

    # --- the decision ----------------------------------------------------------------------
    def lines_wanted(self, now: float, *, free: int, busy_elapsed: Sequence[float] = ()) -> int:
        """Calls that should be in flight (ringing, not yet answered) now, given ``free``
        agents waiting for a call and the talk time so far of each busy agent."""
        mode = self.config.mode
        if mode == "preview" or free < 0:
            return 0
        if mode == "progressive" or not self.room_for_abandon(now):
            return max(0, free)
        p = self.answer_rate()
        within = min(1.0, self.config.ring_s / self.talk_s())
        soon = free + within * len(busy_elapsed)
        if soon <= 0:
            return 0
        ahead = soon / p
        lines = free + self.aggressiveness * max(0.0, ahead - free)
        return int(min(math.floor(lines + 0.5), math.ceil(self.config.max_ratio * soon)))

    def to_dial(
        self, now: float, *, free: int, in_flight: int, busy_elapsed: Sequence[float] = ()
    ) -> int:
        """New calls to start now (``in_flight``: dialled, not yet answered or failed)."""
        return max(0, self.lines_wanted(now, free=free, busy_elapsed=busy_elapsed) - in_flight)
