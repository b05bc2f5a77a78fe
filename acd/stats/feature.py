"""The statistics feature (registered under ``cti.features`` as ``stats``)."""

from __future__ import annotations

from cti.features import FeatureContext

__all__ = ["StatsFeature"]


class StatsFeature:
    name = "stats"
    sections: tuple[str, ...] = ("stats",)

    def setup(self, ctx: FeatureContext) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
