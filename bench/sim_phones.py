"""The benches' Asterisk and its simulated phones (decision 0027), one place for every
bench that runs the harness's Asterisk with Local-channel callers and agents."""

from __future__ import annotations

from typing import Any


def asterisk_kind(media: bool) -> type[Any]:
    """The bench's Asterisk. The simulated phones are Local channels inside it: with the
    product's ``transmit_silence = yes`` every simulated caller and agent sends 50 silence
    frames a second for the whole call, through four Local channels, a bridge and
    MixMonitor: ~1,000 Asterisk threads waking every 20 ms, which took 75-80 % of this
    2-core machine during a 200-call burst (the daemon got 8 %). Real phones and carriers
    make that audio themselves, outside this machine. Without ``media`` the simulated
    phones are quiet (``transmit_silence = no`` in this Asterisk only): the agents still
    answer and play their greeting, MixMonitor still starts, and the bench measures the
    daemon instead of the harness."""
    from cti.asterisk.instance import ChrootAsterisk

    if media:
        return ChrootAsterisk

    class QuietPhones(ChrootAsterisk):
        def write_config(self) -> None:
            super().write_config()
            conf = self.etc_dir / "asterisk.conf"
            text = conf.read_text()
            if "transmit_silence = yes" not in text:
                raise RuntimeError("asterisk.conf has no 'transmit_silence = yes' to turn off")
            conf.write_text(text.replace("transmit_silence = yes", "transmit_silence = no"))

    return QuietPhones
