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
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cti.store.models import clean_text
from cti.web.auth import audit, require_role
from cti.web.body import json_object, model_body, read_body
from cti.web.errors import ApiError, BadRequest, NotFound, PayloadTooLarge, Unavailable
from cti.web.openapi import arr, doc, obj
from cti.web.params import Int, path_int
from ivr.audio import MAX_BYTES, AudioRefused, convert_upload
from ivr.editor import IvrEditor, Saved
from ivr.menus import (
    Collect,
    Defaults,
    IvrData,
    Menu,
    MenuError,
    Number,
    Prompt,
    Recognition,
    Schedule,
)
from ivr.prompts import PromptError, PromptStore
from ivr.schedule import OVERRIDE_MODES, Override, calendar, check, day_info

__all__ = ["ENTITY_KINDS", "IvrApi", "entity_changes"]

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

#: audit entries written for one change of the whole document (import, restore, PUT)
MAX_AUDITED_CHANGES = 200

VERSIONS_LIMIT = Int(name="limit", default=50, lo=1, hi=500,
                     description="how many versions, newest first")  # fmt: skip
YEAR = Int(name="year", lo=1970, hi=2200, description="the year (default: this year)")

# --- OpenAPI descriptions ---------------------------------------------------------------------
_S, _I, _B = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_ANY: dict[str, Any] = {}
VERSION = obj({"id": _I, "created_at": _S, "created_by": _S, "source": _S, "summary": _S},
              required=["id", "created_at", "source"])  # fmt: skip
SAVED = obj({"version": VERSION, "name": _S, "value": _ANY}, required=["version"])
TAGS = ["ivr"]
MODELS: dict[str, type[BaseModel]] = {
    "prompts": Prompt, "menus": Menu, "collect": Collect, "schedules": Schedule, "numbers": Number,
    "defaults": Defaults, "recognition": Recognition,
}  # fmt: skip
OVERRIDE = obj({"mode": _S, "until": {"type": ["string", "null"]}, "note": _S, "set_by": _S,
                "set_at": {"type": ["string", "null"]}})  # fmt: skip


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

    @field_validator("text")
    @classmethod
    def _speakable(cls, v: str) -> str:
        if clean_text(v) != v:
            raise ValueError("contains NUL or a lone surrogate")
        return v


def _refused(exc: MenuError) -> ApiError:
    return ApiError(
        "the change was refused; the menus in force are unchanged", status=422,
        code="invalid-menus", extra={"problems": exc.problems},
    )  # fmt: skip


def entity_changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(target, before, after) of every entry that differs between two documents:
    ``menus.main``, ``prompts.welcome``, ``defaults``, ..."""
    out: list[tuple[str, Any, Any]] = []
    for kind in ENTITY_KINDS:
        b, a = before.get(kind) or {}, after.get(kind) or {}
        for name in sorted(set(b) | set(a)):
            if b.get(name) != a.get(name):
                out.append((f"{kind}.{name}", b.get(name), a.get(name)))
    for single in SINGLETONS:
        if before.get(single) != after.get(single):
            out.append((single, before.get(single), after.get(single)))
    return out


def _verb(before: Any, after: Any) -> str:
    return "create" if before is None else "delete" if after is None else "update"


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
    ) -> None:
        self.editor = editor
        self.prompts = prompts
        self._reload = reload
        self.clock = clock
        self.site_timezone = site_timezone
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
    def _named(self, table: str, name: str) -> Any:
        """The entry ``name`` of the menus in force (``prompts``, ``schedules`` ...), or 404."""
        loaded = self.editor.loaded
        entry = getattr(loaded.data, table).get(name) if loaded is not None else None
        if entry is None:
            raise NotFound(f"no {table} entry named {name!r}")
        return entry

    def _meta(self) -> dict[str, Any] | None:
        v = self.editor.version
        return v.meta() if v is not None else None

    @doc("What the IVR runs: version, menus, numbers, schedules", role="supervisor", tags=TAGS,
         errors=[503], response=obj({"source": _S, "version": VERSION, "menus": arr(_S),
                                     "numbers": arr(_S), "schedules": arr(_S)}))  # fmt: skip
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

    @doc("The whole IVR document in force (menus, prompts, hours, numbers)", role="supervisor",
         tags=TAGS, response=obj({"version": {"anyOf": [VERSION, {"type": "null"}]},
                                  "document": obj()}))  # fmt: skip
    async def get_document(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        return web.json_response({"version": self._meta(), "document": self.editor.document})

    @doc("Saved versions of the IVR document, newest first", role="supervisor", tags=TAGS,
         query=[VERSIONS_LIMIT], response=obj({"versions": arr(VERSION)}))  # fmt: skip
    async def versions(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        rows = await self.editor.store.versions(VERSIONS_LIMIT.value(request))
        return web.json_response({"versions": [v.meta() for v in rows]})

    @doc("One saved version with its document", role="supervisor", tags=TAGS,
         response=obj({"version": VERSION, "document": obj()}))  # fmt: skip
    async def get_version(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        v = await self.editor.store.get(path_int(request))
        if v is None:
            raise NotFound("no such version")
        return web.json_response({"version": v.meta(), "document": v.document})

    @doc(
        "The text-to-speech voices offered",
        role="supervisor",
        tags=TAGS,
        response=obj({"voices": arr(obj({"voice": _S, "label_en": _S, "label_zh": _S}))}),
    )
    async def voices(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        return web.json_response({"voices": list(VOICES)})

    # --- changing ---------------------------------------------------------------------------
    async def _saved(self, request: web.Request, action: str, saved: Saved) -> dict[str, Any]:
        """Audit every entry the change touched (one entry per menu, prompt ...; at most
        MAX_AUDITED_CHANGES) and answer the new version."""
        version = saved.version
        changes = entity_changes(saved.before, saved.after)
        for target, before, after in changes[:MAX_AUDITED_CHANGES]:
            await audit(
                request, f"ivr.{target.split('.')[0]}.{_verb(before, after)}", target_type="ivr",
                target_id=target, before=before, after=after,
                detail=f"{action}: version {version.id} ({version.summary})",
            )  # fmt: skip
        if not changes or len(changes) > MAX_AUDITED_CHANGES:
            await audit(
                request, f"ivr.{action}", target_type="ivr", target_id="document",
                detail=f"version {version.id} ({version.summary}): {len(changes)} entries changed",
            )  # fmt: skip
        return {"version": version.meta()}

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
            out = await self._saved(request, "edit", saved)
            return web.json_response(
                {**out, "name": name, "value": saved.after.get(kind, {}).get(name)}
            )

        return doc(f"Create or change one entry of {kind} (the whole document is validated; "
                   "422 lists every problem)", role="admin", tags=TAGS, body=MODELS[kind],
                   response=SAVED)(handler)  # fmt: skip

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
            out = await self._saved(request, "edit", saved)
            return web.json_response({**out, "deleted": name})

        return doc(f"Delete one entry of {kind} (refused while something uses it)",
                   role="admin", tags=TAGS,
                   response=obj({"version": VERSION, "deleted": _S}))(handler)  # fmt: skip

    def _put_singleton(self, single: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            require_role(request, "admin")
            body = await json_object(request)

            def put(doc: dict[str, Any]) -> str:
                doc[single] = body
                return f"{single} changed"

            saved = await self._change(request, put)
            out = await self._saved(request, "edit", saved)
            return web.json_response({**out, "value": saved.after.get(single)})

        return doc(f"Change the IVR's {single}", role="admin", tags=TAGS, body=MODELS[single],
                   response=SAVED)(handler)  # fmt: skip

    @doc("Replace the whole IVR document (validated whole; 422 lists every problem)",
         role="admin", tags=TAGS, body=IvrData, response=SAVED)  # fmt: skip
    async def put_document(self, request: web.Request) -> web.Response:
        require_role(request, "admin")
        body = await json_object(request, max_bytes=MAX_DOCUMENT)

        def replace(doc: dict[str, Any]) -> str:
            doc.clear()
            doc.update(body)
            return "document replaced"

        saved = await self._change(request, replace)
        out = await self._saved(request, "document.replace", saved)
        return web.json_response({**out, "document": saved.after})

    @doc("Import a TOML menu file (the body); 422 lists every problem with its line",
         role="admin", tags=TAGS, body={"type": "string"}, body_type="text/plain",
         response=SAVED)  # fmt: skip
    async def import_toml(self, request: web.Request) -> web.Response:
        who = require_role(request, "admin")
        raw = await read_body(request.content, MAX_TOML)
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
        return web.json_response(await self._saved(request, "document.import", saved))

    @doc("Restore a saved version (as a new version)", role="admin", tags=TAGS, response=SAVED)
    async def restore(self, request: web.Request) -> web.Response:
        who = require_role(request, "admin")
        version_id = path_int(request)
        try:
            saved = await self.editor.restore(version_id, by=who.actor)
        except LookupError:
            raise NotFound("no such version") from None
        except MenuError as exc:
            raise _refused(exc) from None
        return web.json_response(await self._saved(request, "document.restore", saved))

    @doc(
        "Import the menus file if it changed, then load the newest stored version",
        role="admin",
        tags=TAGS,
        response=obj(
            {"ok": _B, "menus": arr(_S), "version": {"anyOf": [VERSION, {"type": "null"}]}}
        ),
    )
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
    @doc(
        "Upload a recording (the body: WAV, MP3, Ogg, FLAC, WebM or M4A; at most 16 MiB, "
        "0.3-300 s, not silent) as this prompt",
        role="admin",
        tags=TAGS,
        body={"type": "string", "format": "binary"},
        body_type="application/octet-stream",
        response=obj({"version": VERSION, "name": _S, "value": _ANY, "duration_s": {}}),
    )
    async def upload(self, request: web.Request) -> web.Response:
        require_role(request, "admin")
        name = request.match_info["name"]
        if request.content_length is not None and request.content_length > MAX_BYTES:
            raise PayloadTooLarge(f"a recording is at most {MAX_BYTES // (1024 * 1024)} MiB")
        raw = await read_body(request.content, MAX_BYTES)
        async with self._work:
            try:
                converted = await asyncio.to_thread(convert_upload, raw, self.prompts.host_dir)
            except AudioRefused as exc:
                raise ApiError(str(exc), status=422, code="not-audio") from None
            # kept in the store too: the other nodes play it from their own directory
            wav = await asyncio.to_thread(converted.path.read_bytes)
            await self.editor.store.put_audio(converted.id, wav)

        def put(doc: dict[str, Any]) -> str:
            table = doc.setdefault("prompts", {})
            verb = "changed" if name in table else "added"
            table[name] = {"upload": converted.id}
            return f"prompts.{name} {verb} (uploaded recording)"

        saved = await self._change(request, put)
        out = await self._saved(request, "upload", saved)
        after = saved.after.get("prompts", {}).get(name)
        return web.json_response(
            {**out, "name": name, "value": after, "duration_s": round(converted.duration_s, 2)}
        )

    @doc("Listen to a prompt (WAV)", role="supervisor", tags=TAGS, content_type="audio/wav")
    async def audio(self, request: web.Request) -> web.StreamResponse:
        require_role(request, "supervisor")
        prompt: Prompt = self._named("prompts", request.match_info["name"])
        path = self.prompts.host_path(prompt)
        if path is None:
            raise NotFound("this prompt is one of Asterisk's own sounds: only Asterisk has it")
        if not path.is_file():
            raise NotFound("the prompt's audio file is missing")
        return web.FileResponse(path, headers={"Content-Type": "audio/wav"})

    @doc(
        "Every prompt, with what Asterisk plays for it",
        role="supervisor",
        tags=TAGS,
        response=obj({"prompts": arr(obj({"name": _S, "kind": _S, "playable": _S}))}),
    )
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

    @doc("Speak a text (WAV) before saving it as a prompt", role="admin", tags=TAGS, body=TtsIn,
         content_type="audio/wav")  # fmt: skip
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
    @doc("Each schedule's state now: open or why not, local time, today, override",
         role="supervisor", tags=TAGS,
         response=obj({"schedules": arr(obj({"name": _S, "open": _B, "reason": _S})),
                       "modes": arr(_S)}))  # fmt: skip
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

    @doc(
        "A year's holidays and make-up workdays of a schedule (the country's and the site's)",
        role="supervisor",
        tags=TAGS,
        query=[YEAR],
        response=obj(
            {
                "schedule": _S,
                "year": _I,
                "days": arr(obj({"date": _S, "kind": _S, "name": _S, "source": _S})),
            }
        ),
    )
    async def calendar(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        name = request.match_info["name"]
        sched: Schedule = self._named("schedules", name)
        year = (
            YEAR.read(request)
            or self.clock().astimezone(ZoneInfo(sched.timezone or self.site_timezone)).year
        )
        days = [
            {"date": d.isoformat(), "kind": i.kind, "name": i.name, "source": i.source}
            for d, i in calendar(sched, year)
        ]
        return web.json_response({"schedule": name, "year": year, "days": days})

    @doc(
        "Set a schedule to day, night or emergency by hand (or back to auto)",
        role="supervisor",
        tags=TAGS,
        body=OverrideIn,
        response=obj({"schedule": _S, "override": {"anyOf": [OVERRIDE, {"type": "null"}]}}),
    )
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
                name, body.mode, by=who.actor, at=now, until=until, note=clean_text(body.note)
            )
        except LookupError:
            raise NotFound(f"no schedule named {name!r}") from None
        await audit(
            request, "ivr.override.set", target_type="ivr", target_id=f"schedules.{name}",
            before=_override_json(before), after=_override_json(after) or {"mode": "auto"},
        )  # fmt: skip
        return web.json_response({"schedule": name, "override": _override_json(after)})
