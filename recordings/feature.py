"""The recordings feature (registered under ``cti.features`` as ``recordings``)."""

from __future__ import annotations

from cti.features import FeatureContext

__all__ = ["RecordingsFeature"]


class RecordingsFeature:
    name = "recordings"
    sections: tuple[str, ...] = ("recordings",)

    def setup(self, ctx: FeatureContext) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
