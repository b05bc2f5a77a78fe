"""The desktop feature (registered under ``cti.features`` as ``desktop``)."""

from __future__ import annotations

from cti.features import FeatureContext

__all__ = ["DesktopFeature"]


class DesktopFeature:
    name = "desktop"
    sections: tuple[str, ...] = ("desktop",)

    def setup(self, ctx: FeatureContext) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass
