"""The console feature: serves the console's pages under ``/console/``.

The pages hold no data and no secret; every byte they show comes from the features'
own REST APIs (``/api/v1/acd/…``, ``/api/v1/ivr/…``, ``/api/v1/recordings/policy``,
``/api/v1/dispositions``, ``/api/v1/webhooks/targets``, the platform's users and audit
log) with the signed-in person's credentials, so the console imports no feature and
each feature keeps its own rules and validation.
"""

from __future__ import annotations

from pathlib import Path

from cti.features import FeatureContext
from cti.web.pages import add_pages

__all__ = ["PAGE_PREFIX", "ConsoleFeature"]

PAGE_PREFIX = "/console"


class ConsoleFeature:
    name = "console"
    sections: tuple[str, ...] = ()

    def setup(self, ctx: FeatureContext) -> None:
        add_pages(ctx.app, PAGE_PREFIX, Path(__file__).parent / "static")

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
