"""A sum of :class:`~stats.formulas.Counts` that a part can leave as well as join.

The wallboard's "today so far" is the sum of every entry of the day (tens of thousands by
the afternoon), and an entry's counters change while its call goes on and when the
store's row replaces what AMI told. Summing the whole day again for every frame cost the
event loop 0.3 s at 30,000 entries (issue #19); :class:`RunningCounts` takes the old
counters of the changed entry out and puts the new ones in, so a change costs the same
whatever the day's size.

Guarantees:

- **Exact.** A sum is kept as an integer multiple of 2^-1100, below the smallest float's
  step (2^-1074), so every float adds and subtracts without rounding: after any sequence
  of :meth:`~RunningCounts.add` and :meth:`~RunningCounts.remove`, :meth:`~RunningCounts.counts`
  is the exact sum of the parts still in, rounded once (the integer fields exactly). No
  drift however long the day, and the same figures whatever the order.
- **The max fields** (``wait_max``, ``hold_max``) are the max over the parts still in: each
  value is counted, and the max is looked for again only when the last part holding it leaves.
- Removing a part that was never added is the caller's error (the wallboard removes only
  what it added).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import fields
from operator import attrgetter

from stats.formulas import MAX_FIELDS, Counts

__all__ = ["RunningCounts"]

_INTS = tuple(f.name for f in fields(Counts) if isinstance(f.default, int))
_FLOATS = tuple(f.name for f in fields(Counts) if f.name not in MAX_FIELDS and f.name not in _INTS)
_ints_of = attrgetter(*_INTS)
_floats_of = attrgetter(*_FLOATS)
_maxes_of = attrgetter(*MAX_FIELDS)
_SCALE = 1100  # bits below the point: every float is a whole multiple of 2^-1074
_ONE = 1 << _SCALE
_fixed_seen: dict[float, int] = {}  # the day's waits and talks repeat: each converted once


def _fixed(value: float) -> int:
    """``value`` as a whole number of 2^-_SCALE (exact for every finite float)."""
    done = _fixed_seen.get(value)
    if done is None:
        num, den = value.as_integer_ratio()
        done = num << (_SCALE - den.bit_length() + 1)  # den is a power of two
        if len(_fixed_seen) >= 100_000:
            _fixed_seen.clear()
        _fixed_seen[value] = done
    return done


class RunningCounts:
    __slots__ = ("_floats", "_ints", "_maxes", "_peaks", "parts")

    def __init__(self) -> None:
        self._ints = [0] * len(_INTS)
        self._floats = [0] * len(_FLOATS)  # whole multiples of 2^-_SCALE
        self._maxes: tuple[Counter[float], ...] = tuple(Counter() for _ in MAX_FIELDS)
        self._peaks = [0.0] * len(MAX_FIELDS)
        #: how many parts are in
        self.parts = 0

    def add(self, c: Counts) -> None:
        self._move(c, 1)

    def remove(self, c: Counts) -> None:
        self._move(c, -1)

    def _move(self, c: Counts, sign: int) -> None:
        ints, floats = self._ints, self._floats
        for i, value in enumerate(_ints_of(c)):
            if value:
                ints[i] += sign * value
        for i, value in enumerate(_floats_of(c)):
            if value:
                floats[i] += sign * _fixed(value)
        for i, value in enumerate(_maxes_of(c)):
            seen = self._maxes[i]
            seen[value] += sign
            if sign > 0:
                if value > self._peaks[i]:
                    self._peaks[i] = value
            elif seen[value] <= 0:
                del seen[value]
                if value >= self._peaks[i]:  # the last part at the peak left
                    self._peaks[i] = max(seen, default=0.0)
        self.parts += sign

    def counts(self) -> Counts:
        out = Counts()
        for name, total in zip(_INTS, self._ints, strict=True):
            setattr(out, name, total)
        for name, fixed in zip(_FLOATS, self._floats, strict=True):
            setattr(out, name, fixed / _ONE)
        for name, peak in zip(MAX_FIELDS, self._peaks, strict=True):
            setattr(out, name, peak)
        return out
