"""REST routes of the recordings feature (everything under /api/ needs a bearer token).

Playback is by recording id only. Agents see and play recordings of their own calls;
supervisors (and admins) all of them. Every listen and download, every on-demand
control and every live-monitoring start is written to the audit trail.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from cti.ami.client import AmiClient
from cti.principal import Principal
from cti.web.auth import principal as _principal
from cti.web.auth import require_role
from cti.web.body import json_object
from cti.web.errors import ApiError, BadRequest, Forbidden, NotFound
from cti.web.openapi import INT, STR, arr, doc, obj
from cti.web.params import Int, Text, When, datetime_param, int_param, text_param
from recordings.config import RecordingsConfig
from recordings.control import ControlError, Recorder
from recordings.models import Recording
from recordings.naming import EXTENSIONS, PathRefused, resolve_inside
from recordings.peers import PEER_ROUTE, Peers
from recordings.processing import Processor
from recordings.reconcile import reconcile
from recordings.serve import send_file
from recordings.signing import UrlSigner
from recordings.spy import MODES, start_spy
from recordings.store import RecordingFilter, RecordingStore, to_json

__all__ = ["RecordingsApi"]

log = logging.getLogger(__name__)

MAX_TEXT = 128
ID_ROUTE = r"{id:[0-9]{1,18}}"


SEARCH_QUERY = [
    When(name="since"), When(name="until"),
    *(Text(name=n, max_len=MAX_TEXT) for n in (
        "queue", "agent", "customer", "number", "disposition", "linkedid", "status")),
    Int(name="limit", default=100, lo=1, hi=500), Int(name="before_id", lo=0),
]  # fmt: skip
AUDIT_QUERY = [
    Int(name="recording_id", lo=0), Text(name="actor", max_len=MAX_TEXT),
    Int(name="limit", default=200, lo=1, hi=1000),
]  # fmt: skip


def _is_supervisor(p: Principal) -> bool:
    return p.at_least("supervisor")


def _text(request: web.Request, name: str) -> str:
    return text_param(request, name, max_len=MAX_TEXT).strip()


def _when(request: web.Request, name: str) -> datetime | None:
    return datetime_param(request, name)


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    return int_param(request, name, default, lo, hi)


def _error(exc: ControlError) -> ApiError:
    return ApiError(str(exc), status=exc.status)


@dataclass
class RecordingsApi:
    config: RecordingsConfig
    store: RecordingStore
    processor: Processor
    recorder: Recorder
    signer: UrlSigner
    ami: AmiClient
    peers: Peers

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/api/v1/recordings", self.search)
        r.add_get("/api/v1/recordings/live", self.live)
        r.add_get("/api/v1/recordings/audit", self.audit)
        r.add_post("/api/v1/recordings/reconcile", self.run_reconcile)
        r.add_post("/api/v1/recordings/monitor", self.monitor)
        r.add_post(
            "/api/v1/recordings/calls/{linkedid:[A-Za-z0-9._-]{1,64}}/{action:[a-z]{1,8}}",
            self.control,
        )
        r.add_get(f"/api/v1/recordings/{ID_ROUTE}", self.get_one)
        r.add_get(f"/api/v1/recordings/{ID_ROUTE}/audio", self.audio)
        r.add_post(f"/api/v1/recordings/{ID_ROUTE}/play-url", self.play_url)
        r.add_get(f"/recordings/media/{ID_ROUTE}", self.media)
        r.add_get(PEER_ROUTE, self.peer)

    # --- access ---------------------------------------------------------------------------
    async def _visible(self, request: web.Request) -> tuple[Principal, Recording]:
        """The recording named in the URL if this principal may see it, else 404/403."""
        principal = _principal(request)
        row = await self.store.get(int(request.match_info["id"]))
        if row is None:
            raise NotFound("no such recording")
        if not _is_supervisor(principal) and row.agent != principal.name:
            raise Forbidden("not your call")
        return principal, row

    def _file(self, row: Recording) -> Any:
        if row.status != "ready" or not row.path:
            raise NotFound(f"recording is {row.status}")
        try:
            return resolve_inside(self.config.root_dir, row.path)
        except PathRefused:
            log.warning("refused stored path of recording %s", row.id)
            raise NotFound("recording file not available") from None

    async def _send(
        self, request: web.Request, row: Recording, download_name: str | None = None
    ) -> web.StreamResponse:
        """The file from this node's root, or relayed from the node that holds it."""
        path = self._file(row)
        if self.peers.elsewhere(row) and not await asyncio.to_thread(path.is_file):
            return await self.peers.relay(
                request, row, suffix=path.suffix, download_name=download_name
            )
        return await send_file(request, path, download_name=download_name)

    # --- search and metadata --------------------------------------------------------------
    @doc(
        "Search recordings (agents: their own calls)",
        tags=["recordings"],
        query=SEARCH_QUERY,
        response=obj({"recordings": arr(obj())}),
    )
    async def search(self, request: web.Request) -> web.Response:
        principal = require_role(request, "agent")
        agent = _text(request, "agent")
        if not _is_supervisor(principal):
            agent = principal.name
        f = RecordingFilter(
            since=_when(request, "since"), until=_when(request, "until"),
            queue=_text(request, "queue"), agent=agent, customer=_text(request, "customer"),
            number=_text(request, "number"), disposition=_text(request, "disposition"),
            linkedid=_text(request, "linkedid"), status=_text(request, "status"),
            limit=_int(request, "limit", 100, 1, 500),
            before_id=_int(request, "before_id", 0, 0, 10**18) or None,
        )  # fmt: skip
        rows = await self.store.search(f)
        return web.json_response({"recordings": [to_json(r) for r in rows]})

    @doc("One recording's metadata", tags=["recordings"], response=obj())
    async def get_one(self, request: web.Request) -> web.Response:
        _, row = await self._visible(request)
        return web.json_response(to_json(row))

    @doc(
        "Who listened to, downloaded or monitored what",
        role="supervisor",
        tags=["recordings"],
        query=AUDIT_QUERY,
        response=obj({"audit": arr(obj())}),
    )
    async def audit(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        rid = _int(request, "recording_id", 0, 0, 10**18) or None
        rows = await self.store.audit_log(
            recording_id=rid,
            actor=_text(request, "actor"),
            limit=_int(request, "limit", 200, 1, 1000),
        )
        return web.json_response({"audit": rows})

    # --- playback -------------------------------------------------------------------------
    @doc(
        "The audio (Range requests supported; ?download=1 for a file)",
        tags=["recordings"],
        query=[Text(name="download", max_len=1)],
        content_type="audio/wav",
        errors=[416],
        extra_responses={206: "Partial content"},
    )
    async def audio(self, request: web.Request) -> web.StreamResponse:
        """Bearer-token playback/download with Range support (API clients)."""
        principal, row = await self._visible(request)
        self._file(row)
        download = request.query.get("download") == "1"
        range_header = request.headers.get("Range", "")
        # one audit row per listen, not per seek: only requests that start at byte 0
        if download or not range_header or range_header.replace(" ", "") in ("bytes=0-", ""):
            await self.store.audit(
                principal.name, principal.role, "download" if download else "listen",
                recording_id=row.id, linkedid=row.linkedid,
            )  # fmt: skip
        name = f"recording-{row.id}{EXTENSIONS.get(row.format, '.wav')}" if download else None
        return await self._send(request, row, download_name=name)

    @doc(
        "A short-lived signed URL for the page's audio element",
        tags=["recordings"],
        response=obj({"url": STR, "expires_in": INT}),
    )
    async def play_url(self, request: web.Request) -> web.Response:
        """A short-lived signed URL for the page's ``<audio>`` element (audited as a listen)."""
        principal, row = await self._visible(request)
        self._file(row)
        await self.store.audit(
            principal.name, principal.role, "listen", recording_id=row.id, linkedid=row.linkedid
        )
        url = self.signer.sign(row.id, principal.name)
        return web.json_response({"url": url, "expires_in": self.signer.ttl_s})

    async def media(self, request: web.Request) -> web.StreamResponse:
        rid = int(request.match_info["id"])
        q = request.query
        if not self.signer.verify(rid, q.get("p", ""), q.get("e", ""), q.get("s", "")):
            raise Forbidden("invalid or expired link")
        row = await self.store.get(rid)
        if row is None:
            raise NotFound("no such recording")
        return await self._send(request, row)

    async def peer(self, request: web.Request) -> web.StreamResponse:
        """Another node relaying a recording this node holds (recordings.peers)."""
        rid = int(request.match_info["id"])
        q = request.query
        if not self.peers.signer.verify(rid, q.get("e", ""), q.get("s", "")):
            raise Forbidden("invalid or expired link")
        row = await self.store.get(rid)
        if row is None:
            raise NotFound("no such recording")
        return await send_file(request, self._file(row))  # never relayed further

    # --- live -----------------------------------------------------------------------------
    @doc(
        "Calls being recorded now (agents: their own)",
        tags=["recordings"],
        response=obj({"calls": arr(obj())}),
    )
    async def live(self, request: web.Request) -> web.Response:
        principal = require_role(request, "agent")
        agent = None if _is_supervisor(principal) else principal.name
        return web.json_response({"calls": self.recorder.live_calls(agent)})

    @doc(
        "Start, stop, pause or resume the recording of a live call",
        tags=["recordings"],
        errors=[409, 503],
        response=obj(),
    )
    async def control(self, request: web.Request) -> web.Response:
        principal = require_role(request, "agent")
        linkedid, action = request.match_info["linkedid"], request.match_info["action"]
        if action not in ("start", "stop", "pause", "resume"):
            raise NotFound("unknown action")
        try:
            call = self.recorder.live(linkedid)
            if not _is_supervisor(principal) and call.agent != principal.name:
                raise Forbidden("not your call")
            call = await self.recorder.command(
                linkedid, action, by_supervisor=_is_supervisor(principal)
            )
        except ControlError as exc:
            raise _error(exc) from None
        seg = call.segment
        await self.store.audit(
            principal.name, principal.role, action, linkedid=linkedid,
            recording_id=seg.row_id if seg else None,
        )  # fmt: skip
        return web.json_response(call.snapshot())

    @doc(
        "Listen to, whisper to or barge into a live call",
        role="supervisor",
        tags=["recordings"],
        status=202,
        errors=[409, 503],
        body=obj(
            {"linkedid": STR, "mode": {"type": "string", "enum": ["listen", "whisper", "barge"]}},
            required=["linkedid"],
        ),
        response=obj({"channel": STR, "linkedid": STR, "agent": STR, "mode": STR}),
    )
    async def monitor(self, request: web.Request) -> web.Response:
        principal = require_role(request, "supervisor")
        body = await json_object(request)
        linkedid, mode = body.get("linkedid"), body.get("mode", "listen")
        if not isinstance(linkedid, str) or not isinstance(mode, str) or mode not in MODES:
            raise BadRequest(f"need linkedid and mode ({', '.join(MODES)})")
        try:
            call = self.recorder.live(linkedid[:64])
            spy_id = await start_spy(self.ami, self.config, call, principal.name, mode)
        except ControlError as exc:
            raise _error(exc) from None
        await self.store.audit(
            principal.name, principal.role, f"spy_{mode}", linkedid=call.linkedid,
            detail=f"agent={call.agent} channel={spy_id}",
        )  # fmt: skip
        return web.json_response(
            {"channel": spy_id, "linkedid": call.linkedid, "agent": call.agent, "mode": mode},
            status=202,
        )

    @doc(
        "Reconcile recording files with their rows now",
        role="supervisor",
        tags=["recordings"],
        response=obj(),
    )
    async def run_reconcile(self, request: web.Request) -> web.Response:
        principal = require_role(request, "supervisor")
        report = await reconcile(self.processor, live_linkedids=set(self.recorder.calls))
        await self.store.audit(principal.name, principal.role, "reconcile", detail=report.summary())
        return web.json_response(report.as_dict())
