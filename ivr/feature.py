"""The IVR feature: serves the ``ivr`` FastAGI route, reloads menus without restart.

Reload (SIGHUP, ``POST /api/v1/ivr/reload`` as admin, ``cti ivr reload``) validates the
file and renders its text prompts first; only a fully valid file replaces the running
menus, so a broken edit is refused with its line numbers and calls keep being served by
the previous version. A call in progress keeps the menus it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime

from aiohttp import web

from cti.agi.server import AgiSession
from cti.features import FeatureContext
from cti.web.auth import require_role
from cti.web.errors import ApiError, Unavailable
from cti.web.openapi import BOOL, arr, doc, obj
from ivr.config import IvrConfig
from ivr.flow import Env, Loaded, run_call
from ivr.menus import MenuError, load_menus
from ivr.prompts import PromptError, PromptStore

__all__ = ["ROUTE", "IvrFeature"]

log = logging.getLogger(__name__)

ROUTE = "ivr"


class IvrFeature:
    name = "ivr"
    sections: tuple[str, ...] = ("ivr",)

    def __init__(self) -> None:
        self._ctx: FeatureContext | None = None
        self.config = IvrConfig()
        self.loaded: Loaded | None = None
        self._lock = asyncio.Lock()
        self._sighup = False
        self.now_override: datetime | None = None
        self._reloads: set[asyncio.Task[None]] = set()

    # --- Feature ------------------------------------------------------------------------------
    def setup(self, ctx: FeatureContext) -> None:
        self._ctx = ctx
        self.config = ctx.section("ivr", IvrConfig)
        self.now_override = self.config.now_override
        self.store = PromptStore(self.config.prompt_dir, self.config.prompt_dir_asterisk)
        ctx.agi.add_route(ROUTE, self._handle)
        ctx.app.router.add_post("/api/v1/ivr/reload", self._reload_route)
        ctx.app.router.add_get("/api/v1/ivr", self._status_route)

    async def start(self) -> None:
        try:
            await self.reload()
        except MenuError as exc:
            # the daemon still runs: calls go to the default queue until the file is fixed
            log.error("IVR menus not loaded:\n%s", exc)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._sighup = True

    async def stop(self) -> None:
        if self._sighup:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False

    # --- reload -------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.now_override or datetime.now(UTC)

    async def reload(self) -> Loaded:
        """Load, validate and render; raises :class:`MenuError` and keeps the old menus."""
        ctx = self._ctx
        assert ctx is not None, "setup() first"
        region = ctx.settings.site.default_region
        async with self._lock:
            data = await asyncio.to_thread(load_menus, self.config.menus, region=region)
            playable: dict[str, str] = {}
            for name, prompt in data.prompts.items():
                try:
                    await asyncio.to_thread(self.store.render, prompt)
                except PromptError as exc:
                    raise MenuError([f"{self.config.menus}: prompts.{name}: {exc}"]) from None
                playable[name] = self.store.playable(prompt)
            self.loaded = Loaded(data, playable, str(self.config.menus))
        log.info("IVR menus loaded from %s (%d menus)", self.config.menus, len(data.menus))
        return self.loaded

    def _on_sighup(self) -> None:
        async def go() -> None:
            try:
                await self.reload()
            except MenuError as exc:
                log.error("IVR reload refused, previous menus keep serving:\n%s", exc)

        task = asyncio.get_running_loop().create_task(go())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    @doc(
        "Reload the IVR menus (the previous ones keep serving if invalid)",
        role="admin",
        tags=["ivr"],
        response=obj({"ok": BOOL, "menus": arr()}),
    )
    async def _reload_route(self, request: web.Request) -> web.Response:
        require_role(request, "admin")
        try:
            loaded = await self.reload()
        except MenuError as exc:
            raise ApiError(
                "invalid menu file; the previous menus keep serving", status=422,
                code="invalid-menus", extra={"problems": exc.problems},
            ) from None  # fmt: skip
        return web.json_response({"ok": True, "menus": sorted(loaded.data.menus)})

    @doc("The loaded IVR menus", role="supervisor", tags=["ivr"], errors=[503], response=obj())
    async def _status_route(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        if self.loaded is None:
            raise Unavailable("no menus loaded")
        data = self.loaded.data
        return web.json_response(
            {"source": self.loaded.source, "menus": sorted(data.menus),
             "numbers": sorted(data.numbers), "schedules": sorted(data.schedules)}
        )  # fmt: skip

    # --- calls --------------------------------------------------------------------------------
    async def _handle(self, agi: AgiSession) -> None:
        loaded, ctx = self.loaded, self._ctx
        if loaded is None or ctx is None:
            return  # no CTI_IVR_ACTION: the dialplan sends the call to the default queue
        env = Env(
            loaded=loaded, config=self.config, bus=ctx.bus, services=ctx.services,
            site_timezone=ctx.settings.site.timezone, region=ctx.settings.site.default_region,
            clock=self.now,
        )  # fmt: skip
        await run_call(agi, env)
