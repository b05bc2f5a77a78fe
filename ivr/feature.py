"""The IVR feature: serves the ``ivr`` FastAGI route from menus kept in the store.

The menus in force are the newest stored version (:mod:`ivr.editor`): edited through
the API (the console), or imported from the menus file (``[ivr] menus``) when the
daemon starts or reloads and the file changed since its last import. Reload (SIGHUP,
``POST /api/v1/ivr/reload`` as admin, ``cti ivr reload``) validates and renders first;
an invalid file or document is refused with its problems and calls keep being served by
the previous version. A call in progress keeps the menus it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime

from cti.agi.server import AgiSession
from cti.ami.client import AmiClient
from cti.events import AmiConnected, AmiDisconnected
from cti.features import FeatureContext
from cti.phone import normalize
from cti.tasks import BackgroundTasks
from ivr.api import IvrApi
from ivr.config import IvrConfig
from ivr.editor import IvrEditor
from ivr.flow import Env, Loaded, recognise_caller, run_call
from ivr.media import MediaServer, MediaSigner, auto_base, media_key
from ivr.media_cache import COMMAND_TIMEOUT_S, MediaCache
from ivr.menus import MenuError
from ivr.prompts import PromptStore, Speaker
from ivr.store import IvrStore

__all__ = ["ROUTE", "IvrFeature"]

log = logging.getLogger(__name__)

ROUTE = "ivr"


class IvrFeature:
    name = "ivr"
    sections: tuple[str, ...] = ("ivr",)

    def __init__(self) -> None:
        self._ctx: FeatureContext | None = None
        self.config = IvrConfig()
        self.editor: IvrEditor | None = None
        self._sighup = False
        self.now_override: datetime | None = None
        self._tasks = BackgroundTasks("ivr")

    @property
    def loaded(self) -> Loaded | None:
        return self.editor.loaded if self.editor is not None else None

    # --- Feature ------------------------------------------------------------------------------
    def setup(self, ctx: FeatureContext) -> None:
        self._ctx = ctx
        self.config = ctx.section("ivr", IvrConfig)
        self.now_override = self.config.now_override
        self.media: MediaServer | None = None
        self.media_cache: MediaCache | None = None
        signer = self._media_signer(ctx)
        if signer is not None:
            self.media = MediaServer(signer, self.config.prompt_dir, ctx.registry)
            self.media.add_routes(ctx.app)
            self.media_cache = self._media_cache(ctx, signer)
        self.store = PromptStore(self.config.prompt_dir, self.config.prompt_dir_asterisk, signer)
        self.editor = IvrEditor(
            IvrStore(ctx.db), self.store, self.config.menus, ctx.settings.site.default_region
        )
        cache = self.media_cache
        if cache is not None:
            self.editor.on_swap = lambda loaded: cache.plays("menus", loaded.playable.values())
        ctx.agi.add_route(ROUTE, self._handle)
        sounds = self.config.sounds_dir
        if sounds is None and str(self.config.prompt_dir) == self.config.prompt_dir_asterisk:
            sounds = self.config.prompt_dir.parent  # no chroot: <sounds>/cti -> <sounds>
        # queue prompts, survey, numbers in the queue's language (decision 0026)
        ctx.services.prompts = Speaker(self.store, sounds, self.media_cache)
        IvrApi(
            self.editor, self.store, reload=lambda by: self.reload(by=by), clock=self.now,
            site_timezone=ctx.settings.site.timezone,
        ).add_routes(ctx.app)  # fmt: skip

    def _media_signer(self, ctx: FeatureContext) -> MediaSigner | None:
        """Prompts over HTTP (``[ivr] media_url``, ivr.media), or None (by path)."""
        base = self.config.media_url
        if base == "auto":
            base = self._auto_media_url(ctx)
        if not base:
            return None
        return MediaSigner(media_key(self.config.media_secret), base, IvrStore(ctx.db).media_key)

    def _auto_media_url(self, ctx: FeatureContext) -> str:
        """``auto`` (the default, decision 0032): the node's HTTP as Asterisk reaches it
        (ivr.media.auto_base); by path when ``prompt_dir_asterisk`` is set (a directory
        shared with Asterisk) or when no address can be told."""
        if "prompt_dir_asterisk" in self.config.model_fields_set:
            return ""
        s = ctx.settings
        base = auto_base(s.http.host, s.http.port, s.ami.host, s.agi.advertise)
        if base is None:
            level = logging.INFO if s.http.port == 0 else logging.WARNING
            log.log(
                level,
                "[ivr] media_url = auto: no address Asterisk (%s) reaches this node's HTTP "
                "(%s:%s) at; prompts are played by path under %s. Set [ivr] media_url "
                "(or [http] host)", s.ami.host, s.http.host, s.http.port,
                self.config.prompt_dir_asterisk,
            )  # fmt: skip
            return ""
        log.info("prompts are played from %s (media_url = auto)", base)
        return base

    def _media_cache(self, ctx: FeatureContext, signer: MediaSigner) -> MediaCache:
        """Asterisk's media cache kept warm and clean (ivr.media_cache), on an AMI session
        of its own, up while the node drives its Asterisk (AmiConnected: at once on a
        single node, with the lease in a cluster)."""
        a = ctx.settings.ami
        # its Ping waits behind a refresh that waits for a download (up to
        # res_http_media_cache's timeout_secs): not a dead session
        ami = AmiClient(
            a.host, a.port, a.username, a.secret, events="off",
            ping_interval=a.ping_interval,
            action_timeout=max(a.action_timeout, COMMAND_TIMEOUT_S),
            backoff_max=a.reconnect_max_s,
        )  # fmt: skip
        cache = MediaCache(ami, signer, ctx.registry)
        cache.expect("menus")  # loaded at start
        ctx.bus.subscribe(AmiConnected, self._on_driving)
        ctx.bus.subscribe(AmiDisconnected, self._on_not_driving)
        return cache

    def _on_driving(self, event: AmiConnected) -> None:
        if self.media_cache is not None:
            self._tasks.spawn(self.media_cache.start(), "cache")

    def _on_not_driving(self, event: AmiDisconnected) -> None:
        """In a cluster the lease went elsewhere: the cache's session ends with it (on one
        node it reconnects by itself with Asterisk)."""
        ctx, cache = self._ctx, self.media_cache
        if cache is not None and ctx is not None and ctx.settings.cluster.broker_url:
            self._tasks.spawn(cache.close(), "cache-close")

    async def start(self) -> None:
        assert self.editor is not None
        if self.store.media is not None:  # no media_secret: the store's key, made once
            await self.store.media.ensure_key()
        try:
            await self.reload()
        except MenuError as exc:
            # the daemon still runs on what the store has (or sends calls to the default
            # queue) until the file is fixed
            log.error("IVR menus file refused:\n%s", exc)
            try:
                await self.editor.load_current()
            except MenuError as stored:
                log.error("stored IVR menus not loaded:\n%s", stored)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
            self._sighup = True

    async def stop(self) -> None:
        if self._sighup:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        await self._tasks.stop()
        if self.media_cache is not None:
            await self.media_cache.close()

    # --- reload -------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.now_override or datetime.now(UTC)

    async def reload(self, *, by: str = "system") -> Loaded | None:
        """Import the file if it changed and load the newest version; raises
        :class:`MenuError` and keeps the old menus."""
        assert self.editor is not None, "setup() first"
        loaded = await self.editor.reload(by=by)
        if loaded is not None:
            log.info("IVR menus loaded: %s (%d menus)", loaded.source, len(loaded.data.menus))
        return loaded

    def _on_sighup(self) -> None:
        async def go() -> None:
            try:
                await self.reload()
            except MenuError as exc:
                log.error("IVR reload refused, previous menus keep serving:\n%s", exc)

        self._tasks.spawn(go(), "reload")

    # --- calls --------------------------------------------------------------------------------
    async def _handle(self, agi: AgiSession) -> None:
        loaded, ctx, editor = self.loaded, self._ctx, self.editor
        if ctx is None:
            return
        if loaded is None or editor is None:
            # no menus: no CTI_IVR_ACTION, the dialplan sends the call to the default queue
            # right after this; the card is loaded first, so the ring finds it (ivr.flow)
            caller = normalize(agi.env.get("agi_callerid", ""), ctx.settings.site.default_region)
            await recognise_caller(ctx.services, caller, self.config.lookup_timeout_s)
            return
        env = Env(
            loaded=loaded, config=self.config, bus=ctx.bus, services=ctx.services,
            site_timezone=ctx.settings.site.timezone, region=ctx.settings.site.default_region,
            clock=self.now, overrides=dict(editor.overrides),
        )  # fmt: skip
        await run_call(agi, env)
