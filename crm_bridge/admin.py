"""Dispositions and webhook receivers an admin sets in the console.

Both start from the config file (``[[crm.dispositions]]``, ``[[crm.webhooks]]``) and can
be changed without a restart:

- **Dispositions**: ``PUT /api/v1/dispositions`` stores the whole ordered list; from then
  on the stored list is the one agents pick from (``GET /api/v1/dispositions``) and the one
  a call's disposition is checked against. Codes already on interactions stay there.
- **Webhook receivers**: the config's targets stay (read-only here); the console adds,
  changes, disables, re-keys and removes its own (``/api/v1/webhooks/targets``). A new
  receiver's secret (given, or generated) is answered once; afterwards only its last
  four characters are shown. The dispatcher's target list is replaced in place, so the
  next event goes to the new set; a console receiver is the same receiver (its id) under
  a new URL or secret: what was queued for it, and its dead letters, go to it there.

:class:`CrmSettings` rewrites ``config.dispositions`` and the dispatcher's ``targets`` in
place: everything that reads them sees the values in force.
"""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl
from sqlalchemy import delete, select

from crm_bridge.config import (
    CrmConfig,
    Disposition,
    WebhookEvent,
    WebhookTarget,
    _all_events,
    _unique_codes,
)
from crm_bridge.models import DispositionRow, WebhookTargetRow
from crm_bridge.webhooks import Receiver, WebhookDispatcher
from cti.store.db import Database
from cti.store.models import clean_text, clip_text
from cti.web.auth import audit, require_role
from cti.web.body import model_body
from cti.web.errors import Conflict, NotFound
from cti.web.openapi import arr, doc, obj
from cti.web.params import path_int

__all__ = ["CrmSettings", "add_admin_routes"]


def _storable(items: list[Disposition]) -> list[Disposition]:
    for d in items:
        for text in (d.label_en, d.label_zh):
            if clean_text(text) != text:
                raise ValueError("a label contains NUL or a lone surrogate")
    return items


class DispositionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dispositions: Annotated[
        list[Disposition],
        Field(min_length=1, max_length=200),
        AfterValidator(_unique_codes),
        AfterValidator(_storable),
    ]


MAX_URL = 2048  # crm_webhook_targets.url


#: what a receiver's URL may be (the API description says it too)
URL_RULES = (
    "The URL is http or https, at most 2048 characters, without a user name or password "
    "(they would be listed and logged with it: receivers check the X-CTI-Signature "
    "instead). Private and loopback addresses are allowed: on-site receivers are usually "
    "on the call center's own network."
)


def _url_fits(url: HttpUrl | None) -> HttpUrl | None:
    if url is None:
        return url
    if len(str(url)) > MAX_URL:
        raise ValueError(f"a URL of at most {MAX_URL} characters")
    if url.username is not None or url.password is not None:
        raise ValueError(
            "a URL without a user name or password (user:password@): receivers check "
            "the X-CTI-Signature header instead"
        )
    return url


Url = Annotated[HttpUrl, AfterValidator(_url_fits)]


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url
    events: list[WebhookEvent] = Field(default_factory=_all_events, min_length=1)
    secret: str | None = Field(
        default=None, min_length=16, max_length=256, pattern=r"^[\x21-\x7e]+$"
    )  # printable ASCII, no spaces
    enabled: bool = True


class TargetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: Url | None = None
    events: list[WebhookEvent] | None = Field(default=None, min_length=1)
    enabled: bool | None = None


_S = {"type": "string"}
TARGET = obj({"id": {"type": ["integer", "null"]}, "url": _S, "events": arr(_S),
              "enabled": {"type": "boolean"}, "source": _S, "secret_hint": _S},
             required=["url", "events", "source"])  # fmt: skip
TARGET_SECRET = obj({**TARGET["properties"], "secret": _S}, required=["id", "url", "secret"])
DISPOSITIONS = obj({"dispositions": arr(obj({"code": _S, "label_en": _S, "label_zh": _S}))})


def _hint(secret: str) -> str:
    return "…" + secret[-4:]


def _target_json(row: WebhookTargetRow) -> dict[str, Any]:
    return {
        "id": row.id, "url": row.url, "events": json.loads(row.events),
        "enabled": row.enabled, "source": "console", "secret_hint": _hint(row.secret),
        "created_by": row.created_by, "created_at": row.created_at.isoformat(),
    }  # fmt: skip


class CrmSettings:
    def __init__(self, db: Database, config: CrmConfig, webhooks: WebhookDispatcher) -> None:
        self.db = db
        self.config = config
        self.webhooks = webhooks
        self.file_dispositions = list(config.dispositions)
        self.file_targets = list(config.webhooks)

    async def load(self) -> None:
        async with self.db.session() as s:
            rows = (
                (await s.execute(select(DispositionRow).order_by(DispositionRow.position)))
                .scalars()
                .all()
            )
        if rows:
            self.config.dispositions[:] = [
                Disposition(code=r.code, label_en=r.label_en, label_zh=r.label_zh) for r in rows
            ]
        await self._apply_targets()

    # --- dispositions ---------------------------------------------------------------------
    def dispositions(self) -> list[dict[str, Any]]:
        return [d.model_dump() for d in self.config.dispositions]

    async def set_dispositions(self, items: list[Disposition]) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(delete(DispositionRow))
            for i, d in enumerate(items):
                s.add(DispositionRow(code=d.code, label_en=d.label_en, label_zh=d.label_zh,
                                     position=i))  # fmt: skip
        self.config.dispositions[:] = list(items)

    # --- webhook receivers ----------------------------------------------------------------
    async def _rows(self) -> list[WebhookTargetRow]:
        async with self.db.session() as s:
            return list(
                (await s.execute(select(WebhookTargetRow).order_by(WebhookTargetRow.id))).scalars()
            )

    async def _apply_targets(self) -> None:
        mine = [
            Receiver.of(
                WebhookTarget.model_validate(
                    {"url": r.url, "secret": r.secret, "events": json.loads(r.events)}
                ),
                console_id=r.id,
            )
            for r in await self._rows()
            if r.enabled
        ]
        self.webhooks.targets[:] = [*map(Receiver.of, self.file_targets), *mine]

    async def targets(self) -> list[dict[str, Any]]:
        from_file = [
            {"id": None, "url": str(t.url), "events": list(t.events), "enabled": True,
             "source": "config", "secret_hint": _hint(t.secret)}
            for t in self.file_targets
        ]  # fmt: skip
        return from_file + [_target_json(r) for r in await self._rows()]

    async def _check_unique(self, url: str, but: int | None = None) -> None:
        if any(str(t.url) == url for t in self.file_targets) or any(
            r.url == url and r.id != but for r in await self._rows()
        ):
            raise Conflict("a receiver with this URL exists already", code="duplicate-url")

    async def add_target(self, body: TargetIn, by: str) -> tuple[dict[str, Any], str]:
        url = str(body.url)
        await self._check_unique(url)
        secret = body.secret or secrets.token_urlsafe(32)
        row = WebhookTargetRow(
            url=url, secret=secret, events=json.dumps(list(dict.fromkeys(body.events))),
            enabled=body.enabled, created_by=clip_text(by, 128),
        )  # fmt: skip
        async with self.db.session() as s, s.begin():
            s.add(row)
        await self._apply_targets()
        return _target_json(row), secret

    async def _get(self, target_id: int) -> WebhookTargetRow:
        async with self.db.session() as s:
            row = await s.get(WebhookTargetRow, target_id)
        if row is None:
            raise NotFound("no such webhook receiver (receivers of the config file are "
                           "changed in the file)")  # fmt: skip
        return row

    async def change_target(
        self, target_id: int, patch: TargetPatch | None = None, *, new_secret: str = ""
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        before = _target_json(await self._get(target_id))
        if patch is not None and patch.url is not None:
            await self._check_unique(str(patch.url), but=target_id)
        async with self.db.session() as s, s.begin():
            row = await s.get(WebhookTargetRow, target_id)
            if row is None:
                raise NotFound("no such webhook receiver")
            if patch is not None:
                if patch.url is not None:
                    row.url = str(patch.url)
                if patch.events is not None:
                    row.events = json.dumps(list(dict.fromkeys(patch.events)))
                if patch.enabled is not None:
                    row.enabled = patch.enabled
            if new_secret:
                row.secret = new_secret
            await s.flush()
            after = _target_json(row)
        await self._apply_targets()
        return before, after

    async def delete_target(self, target_id: int) -> dict[str, Any]:
        before = _target_json(await self._get(target_id))
        async with self.db.session() as s, s.begin():
            await s.execute(delete(WebhookTargetRow).where(WebhookTargetRow.id == target_id))
        await self._apply_targets()
        return before


def add_admin_routes(app: web.Application, settings: CrmSettings) -> None:
    @doc("Replace the dispositions agents pick from (ordered)", role="admin", tags=["crm"],
         body=DispositionsIn, response=DISPOSITIONS)  # fmt: skip
    async def put_dispositions(request: web.Request) -> web.Response:
        require_role(request, "admin")
        body = await model_body(request, DispositionsIn)
        before = settings.dispositions()
        await settings.set_dispositions(body.dispositions)
        after = settings.dispositions()
        await audit(request, "crm.dispositions.update", target_type="dispositions",
                    before=before, after=after)  # fmt: skip
        return web.json_response({"dispositions": after})

    @doc("Webhook receivers: the config file's and the console's (never their secrets)",
         role="admin", tags=["crm"], response=obj({"targets": arr(TARGET)}))  # fmt: skip
    async def list_targets(request: web.Request) -> web.Response:
        require_role(request, "admin")
        return web.json_response({"targets": await settings.targets()})

    @doc(
        "Add a webhook receiver; its secret is in this answer only",
        role="admin",
        tags=["crm"],
        body=TargetIn,
        status=201,
        errors=[409],
        response=TARGET_SECRET,
        description=URL_RULES,
    )
    async def add_target(request: web.Request) -> web.Response:
        who = require_role(request, "admin")
        body = await model_body(request, TargetIn)
        target, secret = await settings.add_target(body, who.actor)
        await audit(request, "crm.webhook.create", target_type="webhook",
                    target_id=target["id"], after=target)  # fmt: skip
        return web.json_response({**target, "secret": secret}, status=201)

    @doc("Change a webhook receiver's URL, events or enabled state", role="admin",
         tags=["crm"], body=TargetPatch, errors=[409], response=TARGET,
         description=URL_RULES)  # fmt: skip
    async def patch_target(request: web.Request) -> web.Response:
        require_role(request, "admin")
        body = await model_body(request, TargetPatch)
        target_id = path_int(request)
        before, after = await settings.change_target(target_id, body)
        await audit(request, "crm.webhook.update", target_type="webhook", target_id=target_id,
                    before=before, after=after)  # fmt: skip
        return web.json_response(after)

    @doc("Give a webhook receiver a new secret (in this answer only)", role="admin",
         tags=["crm"], response=TARGET_SECRET)  # fmt: skip
    async def rotate_secret(request: web.Request) -> web.Response:
        require_role(request, "admin")
        target_id = path_int(request)
        secret = secrets.token_urlsafe(32)
        _, after = await settings.change_target(target_id, new_secret=secret)
        await audit(request, "crm.webhook.rotate_secret", target_type="webhook",
                    target_id=target_id, detail="a new secret")  # fmt: skip
        return web.json_response({**after, "secret": secret})

    @doc("Remove a webhook receiver", role="admin", tags=["crm"],
         response=obj({"deleted": {"type": "integer"}}))  # fmt: skip
    async def delete_target(request: web.Request) -> web.Response:
        require_role(request, "admin")
        target_id = path_int(request)
        before = await settings.delete_target(target_id)
        await audit(request, "crm.webhook.delete", target_type="webhook", target_id=target_id,
                    before=before)  # fmt: skip
        return web.json_response({"deleted": target_id})

    r = app.router
    target = "/api/v1/webhooks/targets/{id:[0-9]{1,18}}"
    r.add_put("/api/v1/dispositions", put_dispositions)
    r.add_get("/api/v1/webhooks/targets", list_targets)
    r.add_post("/api/v1/webhooks/targets", add_target)
    r.add_patch(target, patch_target)
    r.add_delete(target, delete_target)
    r.add_post(target + "/rotate-secret", rotate_secret)
