"""REST routes of the IVR (under /api/v1/ivr; the console's IVR pages call them).

Supervisors read everything and flip the day/night/emergency override of a schedule;
admins change the menus. Every change goes through :class:`ivr.editor.IvrEditor` (the
whole document validated, prompts made playable, a new stored version, then swapped in
live) and is written to the audit log with the entity before and after. A refused
change is a 422 listing every problem by key path; nothing changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from cti.web.auth import require_role
from cti.web.body import json_object, model_body
from cti.web.errors import ApiError, BadRequest, NotFound, PayloadTooLarge, Unavailable
from cti.web.params import Int, path_int
from ivr.audio import MAX_BYTES, AudioRefused, convert_upload
from ivr.editor import IvrEditor, Saved
from ivr.menus import MenuError, Prompt
from ivr.prompts import PromptError, PromptStore
from ivr.schedule import OVERRIDE_MODES, Override, calendar, check, day_info

__all__ = ["ENTITY_KINDS", "AuditFn", "IvrApi"]

log = logging.getLogger(__name__)

#: what the document holds by name: URL segment -> the document's table
ENTITY_KINDS = ("prompts", "menus", "collect", "schedules", "numbers")
SINGLETONS = ("defaults", "recognition")
NAME = r"{name:[A-Za-z0-9_-]{1,40}}"
NUMBER = r"{name:[0-9+*#]{1,32}}"
MAX_DOCUMENT = 1024 * 1024
MAX_TOML = 1024 * 1024
VOICES = (
    {"voice": "cmn", "label_en": "Mandarin Chinese", "label_zh": "普通话"},
    {"voice": "yue", "label_en": "Cantonese", "label_zh": "粤语"},
    {"voice": "en", "label_en": "English (UK)", "label_zh": "英语 (英国)"},
    {"voice": "en-us", "label_en": "English (US)", "label_zh": "英语 (美国)"},
)

#: how a change is audited: (request, action, target, before, after)
AuditFn = Callable[[web.Request, str, str, Any, Any], Awaitable[None]]

VERSIONS_LIMIT = Int(name="limit", default=50, lo=1, hi=500)
YEAR = Int(name="year", lo=1970, hi=2200)


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str = Field(pattern="^(auto|day|night|emergency)$")
    until: datetime | None = None
    note: str = Field("", max_length=256)


class TtsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000)
    voice: str = Field("en", pattern=r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")
    speed: int = Field(150, ge=80, le=400)


def _refused(exc: MenuError) -> ApiError:
    return ApiError(
        "the change was refused; the menus in force are unchanged", status=422,
        code="invalid-menus", extra={"problems": exc.problems},
    )  # fmt: skip


def _override_json(o: Override | None) -> dict[str, Any] | None:
    if o is None or o.mode == "auto":
        return None
    return {
        "mode": o.mode, "until": o.until.isoformat() if o.until else None, "note": o.note,
        "set_by": o.set_by, "set_at": o.set_at.isoformat() if o.set_at else None,
    }  # fmt: skip


class IvrApi:
    def __init__(
        self,
        editor: IvrEditor,
        prompts: PromptStore,
        *,
        reload: Callable[[str], Awaitable[Any]],
        clock: Callable[[], datetime],
        site_timezone: str,
        audit: AuditFn,
    ) -> None:
        self.editor = editor
        self.prompts = prompts
        self._reload = reload
        self.clock = clock
        self.site_timezone = site_timezone
        self.audit = audit
        self._work = asyncio.Semaphore(2)  # ffmpeg / espeak-ng runs at once

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v1/ivr", self.status)
        r.add_post("/api/v1/ivr/reload", self.reload)
        r.add_get("/api/v1/ivr/document", self.get_document)
        r.add_put("/api/v1/ivr/document", self.put_document)
        r.add_post("/api/v1/ivr/import", self.import_toml)
        r.add_get("/api/v1/ivr/versions", self.versions)
        r.add_get("/api/v1/ivr/versions/{id:[0-9]{1,18}}", self.get_version)
        r.add_post("/api/v1/ivr/versions/{id:[0-9]{1,18}}/restore", self.restore)
        r.add_get("/api/v1/ivr/voices", self.voices)
        r.add_post("/api/v1/ivr/tts", self.tts)
        r.add_get("/api/v1/ivr/schedules", self.schedules)
        r.add_get(f"/api/v1/ivr/schedules/{NAME}/calendar", self.calendar)
        r.add_put(f"/api/v1/ivr/schedules/{NAME}/override", self.put_override)
        r.add_get("/api/v1/ivr/prompts", self.list_prompts)
        r.add_post(f"/api/v1/ivr/prompts/{NAME}/upload", self.upload)
        r.add_get(f"/api/v1/ivr/prompts/{NAME}/audio", self.audio)
        for kind in ENTITY_KINDS:
            path = f"/api/v1/ivr/{kind}/{NUMBER if kind == 'numbers' else NAME}"
            r.add_put(path, self._put_entity(kind))
            r.add_delete(path, self._delete_entity(kind))
        for single in SINGLETONS:
            r.add_put(f"/api/v1/ivr/{single}", self._put_singleton(single))

    # --- reading ----------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any] | None:
        v = self.editor.version
        return v.meta() if v is not None else None

    async def status(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        loaded = self.editor.loaded
        if loaded is None:
            raise Unavailable("no menus loaded")
        data = loaded.data
        return web.json_response(
            {"source": loaded.source, "version": self._meta(), "menus": sorted(data.menus),
             "numbers": sorted(data.numbers), "schedules": sorted(data.schedules)}
        )  # fmt: skip

    async def get_document(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        return web.json_response({"version": self._meta(), "document": self.editor.document})

    async def versions(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        rows = await self.editor.store.versions(VERSIONS_LIMIT.value(request))
        return web.json_response({"versions": [v.meta() for v in rows]})

    async def get_version(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        v = await self.editor.store.get(path_int(request))
        if v is None:
            raise NotFound("no such version")
        return web.json_response({"version": v.meta(), "document": v.document})

    async def voices(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        return web.json_response({"voices": list(VOICES)})

    # --- changing ---------------------------------------------------------------------------
    async def _saved(self, request: web.Request, action: str, target: str, saved: Saved,
                     before: Any, after: Any) -> dict[str, Any]:  # fmt: skip
        await self.audit(request, action, target, before, after)
        return {"version": saved.version.meta()}

    async def _change(
        self, request: web.Request, change: Callable[[dict[str, Any]], str], source: str = "api"
    ) -> Saved:
        who = require_role(request, "admin")
        try:
            return await self.editor.change(change, by=who.actor, source=source)
        except MenuError as exc:
            raise _refused(exc) from None

    def _put_entity(self, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            require_role(request, "admin")
            name = request.match_info["name"]
            body = await json_object(request)

            def put(doc: dict[str, Any]) -> str:
                table = doc.setdefault(kind, {})
                verb = "changed" if name in table else "added"
                table[name] = body
                if kind == "menus" and not doc.setdefault("defaults", {}).get("menu"):
                    doc["defaults"]["menu"] = name  # the first menu is the start menu
                return f"{kind}.{name} {verb}"

            saved = await self._change(request, put)
            before = saved.before.get(kind, {}).get(name)
            after = saved.after.get(kind, {}).get(name)
            out = await self._saved(request, f"ivr.{kind}.put", f"{kind}.{name}", saved,
                                    before, after)  # fmt: skip
            return web.json_response({**out, "name": name, "value": after})

        return handler

    def _delete_entity(self, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            require_role(request, "admin")
            name = request.match_info["name"]

            def delete(doc: dict[str, Any]) -> str:
                table = doc.get(kind, {})
                if name not in table:
                    raise LookupError(name)
                del table[name]
                return f"{kind}.{name} deleted"

            try:
                saved = await self._change(request, delete)
            except LookupError:
                raise NotFound(f"no {kind} entry named {name!r}") from None
            before = saved.before.get(kind, {}).get(name)
            out = await self._saved(request, f"ivr.{kind}.delete", f"{kind}.{name}", saved,
                                    before, None)  # fmt: skip
            return web.json_response({**out, "deleted": name})

        return handler

    def _put_singleton(self, single: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            require_role(request, "admin")
            body = await json_object(request)

            def put(doc: dict[str, Any]) -> str:
                doc[single] = body
                return f"{single} changed"

            saved = await self._change(request, put)
            after = saved.after.get(single)
            out = await self._saved(request, f"ivr.{single}.put", single, saved,
                                    saved.before.get(single), after)  # fmt: skip
            return web.json_response({**out, "value": after})

        return handler

    async def put_document(self, request: web.Request) -> web.Response:
        require_role(request, "admin")
        body = await json_object(request, max_bytes=MAX_DOCUMENT)

        def replace(doc: dict[str, Any]) -> str:
            doc.clear()
            doc.update(body)
            return "document replaced"

        saved = await self._change(request, replace)
        out = await self._saved(request, "ivr.document.put", "document", saved,
                                saved.before, saved.after)  # fmt: skip
        return web.json_response({**out, "document": saved.after})

    async def import_toml(self, request: web.Request) -> web.Response:
        who = require_role(request, "admin")
        raw = await request.content.read(MAX_TOML + 1)
        if len(raw) > MAX_TOML:
            raise PayloadTooLarge(f"a menu file is at most {MAX_TOML} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the menu file is not UTF-8 text") from None
        try:
            saved = await self.editor.import_toml(text, by=who.actor)
        except MenuError as exc:
            raise _refused(exc) from None
        out = await self._saved(request, "ivr.document.import", "document", saved,
                                saved.before, saved.after)  # fmt: skip
        return web.json_response(out)

    async def restore(self, request: web.Request) -> web.Response:
        who = require_role(request, "admin")
        version_id = path_int(request)
        try:
            saved = await self.editor.restore(version_id, by=who.actor)
        except LookupError:
            raise NotFound("no such version") from None
        except MenuError as exc:
            raise _refused(exc) from None
        out = await self._saved(request, "ivr.document.restore", f"version {version_id}",
                                saved, saved.before, saved.after)  # fmt: skip
        return web.json_response(out)

    async def reload(self, request: web.Request) -> web.Response:
        who = require_role(request, "admin")
        try:
            loaded = await self._reload(who.actor)
        except MenuError as exc:
            raise ApiError(
                "invalid menus; the previous menus keep serving", status=422,
                code="invalid-menus", extra={"problems": exc.problems},
            ) from None  # fmt: skip
        menus = sorted(loaded.data.menus) if loaded is not None else []
        return web.json_response({"ok": True, "menus": menus, "version": self._meta()})

    # --- prompts: upload, listen, text to speech ---------------------------------------------
    async def upload(self, request: web.Request) -> web.Response:
        require_role(request, "admin")
        name = request.match_info["name"]
        if request.content_length is not None and request.content_length > MAX_BYTES:
            raise PayloadTooLarge(f"a recording is at most {MAX_BYTES // (1024 * 1024)} MiB")
        raw = await request.content.read(MAX_BYTES + 1)
        async with self._work:
            try:
                converted = await asyncio.to_thread(convert_upload, raw, self.prompts.host_dir)
            except AudioRefused as exc:
                raise ApiError(str(exc), status=422, code="not-audio") from None

        def put(doc: dict[str, Any]) -> str:
            table = doc.setdefault("prompts", {})
            verb = "changed" if name in table else "added"
            table[name] = {"upload": converted.id}
            return f"prompts.{name} {verb} (uploaded recording)"

        saved = await self._change(request, put)
        before = saved.before.get("prompts", {}).get(name)
        after = saved.after.get("prompts", {}).get(name)
        out = await self._saved(request, "ivr.prompts.upload", f"prompts.{name}", saved,
                                before, after)  # fmt: skip
        return web.json_response(
            {**out, "name": name, "value": after, "duration_s": round(converted.duration_s, 2)}
        )

    async def audio(self, request: web.Request) -> web.StreamResponse:
        require_role(request, "supervisor")
        name = request.match_info["name"]
        loaded = self.editor.loaded
        prompt = loaded.data.prompts.get(name) if loaded is not None else None
        if prompt is None:
            raise NotFound(f"no prompt named {name!r}")
        path = self.prompts.host_path(prompt)
        if path is None:
            raise NotFound("this prompt is one of Asterisk's own sounds: only Asterisk has it")
        if not path.is_file():
            raise NotFound("the prompt's audio file is missing")
        return web.FileResponse(path, headers={"Content-Type": "audio/wav"})

    async def list_prompts(self, request: web.Request) -> web.Response:
        """Every prompt with what Asterisk plays for it (``playable``: queues may use a
        prompt as their periodic announcement)."""
        require_role(request, "supervisor")
        loaded = self.editor.loaded
        out = []
        for name, prompt in sorted((loaded.data.prompts if loaded else {}).items()):
            kind = "upload" if prompt.upload else "text" if prompt.text is not None else "file"
            out.append({
                "name": name, "kind": kind, "playable": self.prompts.playable(prompt),
                "text": prompt.text, "voice": prompt.voice if kind == "text" else None,
                "listen": self.prompts.host_path(prompt) is not None,
            })  # fmt: skip
        return web.json_response({"prompts": out})

    async def tts(self, request: web.Request) -> web.Response:
        require_role(request, "admin")
        body = await model_body(request, TtsIn)
        prompt = Prompt(text=body.text, voice=body.voice, speed=body.speed)
        async with self._work:
            try:
                path = await asyncio.to_thread(self.prompts.render, prompt)
            except PromptError as exc:
                raise ApiError(str(exc), status=422, code="tts-failed") from None
        assert path is not None
        data = await asyncio.to_thread(path.read_bytes)
        return web.Response(body=data, content_type="audio/wav")

    # --- business hours ---------------------------------------------------------------------
    async def schedules(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        loaded = self.editor.loaded
        now = self.clock()
        out = []
        for name, sched in sorted((loaded.data.schedules if loaded else {}).items()):
            override = self.editor.overrides.get(name)
            zone = ZoneInfo(sched.timezone or self.site_timezone)
            local = now.astimezone(zone)
            verdict = check(sched, now, self.site_timezone, override)
            today = day_info(sched, local.date())
            out.append({
                "name": name, "timezone": zone.key, "local_time": local.isoformat(),
                "open": verdict.open, "reason": verdict.reason,
                "action": verdict.action.model_dump() if verdict.action else None,
                "today": {"kind": today.kind, "name": today.name, "source": today.source},
                "override": _override_json(override if override and override.active(now)
                                           else None),
            })  # fmt: skip
        return web.json_response({"schedules": out, "modes": list(OVERRIDE_MODES)})

    async def calendar(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        name = request.match_info["name"]
        loaded = self.editor.loaded
        sched = loaded.data.schedules.get(name) if loaded is not None else None
        if sched is None:
            raise NotFound(f"no schedule named {name!r}")
        year = (
            YEAR.read(request)
            or self.clock().astimezone(ZoneInfo(sched.timezone or self.site_timezone)).year
        )
        days = [
            {"date": d.isoformat(), "kind": i.kind, "name": i.name, "source": i.source}
            for d, i in calendar(sched, year)
        ]
        return web.json_response({"schedule": name, "year": year, "days": days})

    async def put_override(self, request: web.Request) -> web.Response:
        who = require_role(request, "supervisor")
        name = request.match_info["name"]
        body = await model_body(request, OverrideIn)
        now = self.clock()
        until = body.until
        if until is not None:
            if until.tzinfo is None:
                raise BadRequest("until needs a UTC offset, e.g. 2026-10-01T08:00:00+08:00")
            if until <= now:
                raise BadRequest("until is in the past")
            until = until.astimezone(UTC)
        try:
            before, after = await self.editor.set_override(
                name, body.mode, by=who.actor, at=now, until=until, note=body.note
            )
        except LookupError:
            raise NotFound(f"no schedule named {name!r}") from None
        await self.audit(request, "ivr.override.set", f"schedules.{name}",
                         _override_json(before), _override_json(after))  # fmt: skip
        return web.json_response({"schedule": name, "override": _override_json(after)})
