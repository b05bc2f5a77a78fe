"""REST routes of the outbound feature (supervisors manage, agents mark do-not-call).

- campaigns: ``GET/POST /api/v1/outbound/campaigns``, ``GET/PATCH …/campaigns/{id}``
- lists: ``GET/POST …/campaigns/{id}/lists``, ``GET …/lists/{id}``
- the column-mapping step: ``POST …/imports/preview`` (the file: its columns, a sample
  and a suggested mapping), then ``POST …/lists/{id}/import?phone=&name=&keep=`` (the
  same file: the import report)
- leads: ``GET …/leads``, ``POST …/leads/reassign``
- do-not-call: ``GET/POST …/dnc``, ``POST …/dnc/import``, ``DELETE …/dnc?number=&scope=``
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cti.services import Conversion, Services
from cti.web.auth import audit, principal, require_role
from cti.web.body import model_body, read_body
from cti.web.errors import ApiError, BadRequest, Conflict, NotFound, PayloadTooLarge
from cti.web.openapi import BOOL, INT, STR, arr, doc, obj
from cti.web.params import Choice, Flag, Int, Text, path_int
from outbound.cleaning import clean, parse_number
from outbound.dialer import CampaignDialer, DialError
from outbound.report import campaign_report, report_csv
from outbound.schemas import NAME, CampaignIn, CampaignPatch
from outbound.sheets import MAX_BYTES, Mapping, SheetError, read_table, suggest_mapping
from outbound.store import CampaignExists, OutboundStore

__all__ = ["OutboundApi"]

log = logging.getLogger(__name__)

TAGS = ["outbound"]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMAT = Choice(name="format", choices=("csv", "xlsx"),
                description="the file's format (default: from Content-Type, else csv)")  # fmt: skip
COLUMN = r"[^\x00-\x1f]{1,64}"
PHONE_COL = Text(name="phone", required=True, max_len=64, pattern=COLUMN,
                 description="the column holding the number")  # fmt: skip
NAME_COL = Text(name="name", max_len=64, pattern=COLUMN, description="the name column")
KEEP_COLS = Text(name="keep", max_len=400,
                 description="other columns kept on the lead card, comma separated")  # fmt: skip
SKIP_CUSTOMERS = Flag(name="skip_customers",
                      description="leave out numbers of existing CRM customers")  # fmt: skip
SCOPE = Text(name="scope", max_len=64, pattern=r"|[a-z0-9][a-z0-9_-]{0,63}",
             description='"" (company list) or a campaign name')  # fmt: skip
SCOPE_FILTER = Text(name="scope", max_len=64, pattern=r"\*|[a-z0-9][a-z0-9_-]{0,63}",
                    description='a campaign name; absent: the company list; "*": all')  # fmt: skip
NUMBER = Text(name="number", required=True, max_len=40)
DNC_COLUMN = Text(name="column", max_len=64, pattern=COLUMN,
                  description="the column of numbers (default: the first)")  # fmt: skip
CAMPAIGN_ID = Int(name="campaign", lo=1, hi=2**31)
LIST_ID = Int(name="list", lo=1, hi=2**31)
LEAD_STATUS = Choice(name="status",
                     choices=("new", "dialing", "retry", "callback", "done", "dnc"))  # fmt: skip
LIMIT = Int(name="limit", default=200, lo=1, hi=1000)
WITH_BUSY = Flag(name="busy", description="recycle busy numbers too")
REPORT_BY = Choice(name="by", choices=("day", "hour", "agent", "list", "server"), default="day")
REPORT_FORMAT = Choice(name="format", choices=("json", "csv"), default="json")
OFFSET = Int(name="offset", default=0, lo=0, hi=10**7)

CAMPAIGN = obj({"id": INT, "name": STR, "mode": STR, "status": STR})
REPORT = obj({"rows": INT, "kept": INT, "rejected": arr(obj()), "duplicates": arr(obj()),
              "dnc": arr(obj()), "customers": arr(obj()), "regions": obj()})  # fmt: skip


class _ListIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)


class _DncIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    numbers: list[str] = Field(min_length=1, max_length=10000)
    scope: str = Field(default="", pattern=rf"{NAME}|^$")
    reason: str = Field(default="", max_length=200)


class _ReassignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    leads: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(min_length=1, max_length=10000)
    agent: str = Field(pattern=r"^[A-Za-z0-9_.@-]{0,128}$")


def _path_id(request: web.Request) -> int:
    """The ``{id}`` of the path (400 if not a number; 404 past the columns' range)."""
    value = path_int(request)
    if not 0 < value < 2**31:
        raise NotFound("no such id")
    return value


class _OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["interested", "not_interested", "wrong_number", "callback", "sale", "dnc"]
    note: str = Field(default="", max_length=2000)
    callback_at: AwareDatetime | None = None


#: a lead's status after the agent's outcome
_AFTER = {"interested": "done", "not_interested": "done", "wrong_number": "done",
          "sale": "done", "dnc": "dnc", "callback": "callback"}  # fmt: skip


class OutboundApi:
    def __init__(
        self, store: OutboundStore, dialer: CampaignDialer | None = None, *,
        timezone: str = "UTC", services: Services | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.dialer = dialer
        self.timezone = timezone
        self.services = services or Services()
        self._work = asyncio.Semaphore(2)  # file parsing off the loop, two at a time

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        p = "/api/v1/outbound"
        r.add_get(f"{p}/campaigns", self.list_campaigns)
        r.add_post(f"{p}/campaigns", self.create_campaign)
        r.add_get(f"{p}/campaigns/{{id}}", self.get_campaign)
        r.add_patch(f"{p}/campaigns/{{id}}", self.patch_campaign)
        r.add_post(f"{p}/campaigns/{{id}}/start", self.start)
        r.add_post(f"{p}/campaigns/{{id}}/pause", self.pause)
        r.add_post(f"{p}/campaigns/{{id}}/stop", self.stop)
        r.add_get(f"{p}/campaigns/{{id}}/live", self.live)
        r.add_get(f"{p}/campaigns/{{id}}/report", self.report)
        r.add_get(f"{p}/campaigns/{{id}}/lists", self.list_lists)
        r.add_post(f"{p}/campaigns/{{id}}/lists", self.create_list)
        r.add_get(f"{p}/lists/{{id}}", self.get_list)
        r.add_post(f"{p}/lists/{{id}}/recycle", self.recycle_list)
        r.add_post(f"{p}/imports/preview", self.preview)
        r.add_post(f"{p}/lists/{{id}}/import", self.import_list)
        r.add_get(f"{p}/leads", self.list_leads)
        r.add_post(f"{p}/leads/reassign", self.reassign)
        r.add_get(f"{p}/me/lead", self.my_lead)
        r.add_get(f"{p}/me/campaigns", self.my_campaigns)
        r.add_post(f"{p}/campaigns/{{id}}/next", self.next_lead)
        r.add_post(f"{p}/leads/{{id}}/dial", self.dial_lead)
        r.add_post(f"{p}/leads/{{id}}/skip", self.skip_lead)
        r.add_post(f"{p}/leads/{{id}}/outcome", self.lead_outcome)
        r.add_get(f"{p}/dnc", self.list_dnc)
        r.add_post(f"{p}/dnc", self.add_dnc)
        r.add_post(f"{p}/dnc/import", self.import_dnc)
        r.add_delete(f"{p}/dnc", self.remove_dnc)

    # --- campaigns ---------------------------------------------------------------------------
    @doc("Campaigns", role="supervisor", tags=TAGS, response=obj({"campaigns": arr(CAMPAIGN)}))
    async def list_campaigns(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        return web.json_response({"campaigns": await self.store.campaigns()})

    @doc("Create a campaign (a draft: start it once it has lists)", role="supervisor",
         tags=TAGS, body=CampaignIn, status=201, errors=[409], response=CAMPAIGN)  # fmt: skip
    async def create_campaign(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        data = await model_body(request, CampaignIn)
        try:
            view = await self.store.create_campaign(data)
        except CampaignExists as exc:
            raise Conflict(str(exc)) from None
        await audit(request, "outbound.campaign.create", target_type="outbound_campaign",
                    target_id=view["id"], after=view)  # fmt: skip
        return web.json_response(view, status=201)

    @doc("One campaign", role="supervisor", tags=TAGS, response=CAMPAIGN)
    async def get_campaign(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        return web.json_response(await self._campaign(request))

    @doc("Change a campaign's settings", role="supervisor", tags=TAGS, body=CampaignPatch,
         response=CAMPAIGN)  # fmt: skip
    async def patch_campaign(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        before = await self._campaign(request)
        patch = await model_body(request, CampaignPatch)
        view = await self.store.update_campaign(before["id"], patch)
        if view is None:
            raise NotFound("no such campaign")
        await audit(request, "outbound.campaign.update", target_type="outbound_campaign",
                    target_id=view["id"], before=before, after=view)  # fmt: skip
        return web.json_response(view)

    async def _campaign(self, request: web.Request) -> dict[str, Any]:
        view = await self.store.campaign(_path_id(request))
        if view is None:
            raise NotFound("no such campaign")
        return view

    # --- running ---------------------------------------------------------------------------
    async def _move(self, request: web.Request, to: str, start: tuple[str, ...]) -> web.Response:
        require_role(request, "supervisor")
        campaign = await self._campaign(request)
        if to == "running" and campaign["mode"] != "preview" and not campaign.get("queue"):
            raise Conflict("set the campaign's queue (its agents) before starting it")
        if not await self.store.set_status(campaign["id"], to, start):
            raise Conflict(f"a {campaign['status']} campaign cannot be {to}")
        view = await self.store.campaign(campaign["id"])
        assert view is not None
        if self.dialer is not None:
            if to == "stopped":
                self.dialer.unload(view["id"])
            else:
                self.dialer.load(view)
        await audit(request, f"outbound.campaign.{to}", target_type="outbound_campaign",
                    target_id=view["id"], before={"status": campaign["status"]},
                    after={"status": to})  # fmt: skip
        return web.json_response(view)

    @doc("Start (or resume) a campaign: it dials while its calling window is open",
         role="supervisor", tags=TAGS, errors=[409], response=CAMPAIGN)  # fmt: skip
    async def start(self, request: web.Request) -> web.Response:
        return await self._move(request, "running", ("draft", "paused", "stopped"))

    @doc("Pause a campaign: no new calls, calls in progress go on", role="supervisor",
         tags=TAGS, errors=[409], response=CAMPAIGN)  # fmt: skip
    async def pause(self, request: web.Request) -> web.Response:
        return await self._move(request, "paused", ("running",))

    @doc("Stop a campaign", role="supervisor", tags=TAGS, errors=[409], response=CAMPAIGN)
    async def stop(self, request: web.Request) -> web.Response:
        return await self._move(request, "stopped", ("running", "paused"))

    @doc("A campaign live: calls ringing, answered waiting, with an agent; agents free and "
         "busy; the abandon rate over the pacing window", role="supervisor", tags=TAGS,
         response=obj({"status": STR, "ringing": INT, "connected": INT,
                       "abandon_rate": {"type": "number"}}))  # fmt: skip
    async def live(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        campaign = await self._campaign(request)
        out: dict[str, Any] = {
            "status": campaign["status"], "mode": campaign["mode"], "ringing": 0,
            "waiting": 0, "connected": 0, "agents_free": 0, "agents_busy": 0,
            "abandon_rate": 0.0, "window_open": False,
            "due": await self.store.due_count(campaign["id"], self.store.clock()),
        }  # fmt: skip
        run = self.dialer.runs.get(campaign["id"]) if self.dialer else None
        if self.dialer is not None and run is not None:
            now = self.dialer.clock()
            calls = list(run.calls.values())
            free, busy, _ = self.dialer.queue_state(run.settings.queue)
            out.update(
                ringing=sum(1 for c in calls if c.answered_at is None),
                waiting=sum(1 for c in calls if c.answered_at and not c.connected_at),
                connected=sum(1 for c in calls if c.connected_at),
                agents_free=free, agents_busy=busy,
                abandon_rate=round(run.pacer.abandon_rate(now.timestamp()), 4),
                window_open=run.window.is_open(now),
            )  # fmt: skip
        return web.json_response(out)

    @doc("A campaign's report by day, hour, agent, list or server (site time zone): attempts, "
         "contacts, conversions, dropped calls, abandon rate, talk and wait time; "
         "format=csv for a spreadsheet", role="supervisor", tags=TAGS,
         query=[REPORT_BY, REPORT_FORMAT], content_type=("application/json", "text/csv"),
         response=obj({"rows": arr(obj()), "total": obj()}))  # fmt: skip
    async def report(self, request: web.Request) -> web.StreamResponse:
        require_role(request, "supervisor")
        campaign = await self._campaign(request)
        by = REPORT_BY.value(request)
        attempts = await self.store.attempts(campaign["id"], limit=1_000_000)
        lists = {lst["id"]: lst["name"] for lst in await self.store.lists(campaign["id"])}
        # off the loop: a big campaign has many attempts
        result = await asyncio.to_thread(campaign_report, attempts, by, self.timezone, lists)
        if REPORT_FORMAT.value(request) == "csv":
            return web.Response(
                body=report_csv(result, by).encode("utf-8"),
                headers={"Content-Type": "text/csv; charset=utf-8",
                         "Content-Disposition":
                         f'attachment; filename="campaign-{campaign["id"]}-{by}.csv"'},
            )  # fmt: skip
        return web.json_response(result)

    # --- lists -------------------------------------------------------------------------------
    @doc("A campaign's lists with their leads by status", role="supervisor", tags=TAGS,
         response=obj({"lists": arr(obj())}))  # fmt: skip
    async def list_lists(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        campaign = await self._campaign(request)
        return web.json_response({"lists": await self.store.lists(campaign["id"])})

    @doc("Add an (empty) list to a campaign; import leads into it", role="supervisor",
         tags=TAGS, body=_ListIn, status=201, response=obj())  # fmt: skip
    async def create_list(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        campaign = await self._campaign(request)
        data = await model_body(request, _ListIn)
        view = await self.store.create_list(campaign["id"], data.name, principal(request).name)
        return web.json_response(view, status=201)

    @doc("A list: its leads by status and its last import report", role="supervisor",
         tags=TAGS, response=obj())  # fmt: skip
    async def get_list(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        view = await self.store.lead_list(_path_id(request))
        if view is None:
            raise NotFound("no such list")
        return web.json_response(view)

    @doc("Recycle a list: its finished leads whose last call was not answered (no answer, "
         "and busy when asked) are dialled again from the start", role="supervisor",
         tags=TAGS, query=[WITH_BUSY], response=obj({"recycled": INT}))  # fmt: skip
    async def recycle_list(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        list_id = _path_id(request)
        if await self.store.lead_list(list_id) is None:
            raise NotFound("no such list")
        outcomes = ("no_answer", "busy") if WITH_BUSY.read(request) else ("no_answer",)
        n = await self.store.recycle(list_id=list_id, outcomes=outcomes)
        await audit(request, "outbound.list.recycle", target_type="outbound_list",
                    target_id=list_id, after={"recycled": n})  # fmt: skip
        return web.json_response({"recycled": n})

    async def _file(self, request: web.Request) -> tuple[bytes, str]:
        if request.content_length is not None and request.content_length > MAX_BYTES:
            raise PayloadTooLarge(f"a list file is at most {MAX_BYTES // (1024 * 1024)} MiB")
        raw = await read_body(request.content, MAX_BYTES)
        if len(raw) > MAX_BYTES:
            raise PayloadTooLarge(f"a list file is at most {MAX_BYTES // (1024 * 1024)} MiB")
        fmt = FORMAT.read(request) or ("xlsx" if request.content_type == XLSX else "csv")
        return raw, fmt

    async def _table(self, request: web.Request) -> Any:
        raw, fmt = await self._file(request)
        async with self._work:
            try:
                return await asyncio.to_thread(read_table, raw, fmt)
            except SheetError as exc:
                raise ApiError(str(exc), status=422, code="bad-file") from None

    @doc("The column-mapping step: a file's columns, its first rows and a suggested "
         "mapping (nothing is stored)", role="supervisor", tags=TAGS, query=[FORMAT],
         body={"type": "string", "format": "binary"}, body_type="text/csv", errors=[413, 422],
         response=obj({"columns": arr(STR), "sample": arr(arr(STR)), "rows": INT,
                       "suggested": obj()}))  # fmt: skip
    async def preview(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        table = await self._table(request)
        guess = suggest_mapping(table.header)
        return web.json_response({
            "columns": table.header, "sample": table.rows[:5], "rows": len(table.rows),
            "suggested": None if guess is None else
            {"phone": guess.phone, "name": guess.name, "keep": guess.keep},
        })  # fmt: skip

    @doc("Import leads into a list with a column mapping: numbers to E.164, invalid ones "
         "rejected with the reason, duplicates (in the file, in the list), do-not-call "
         "hits and CRM customers (with their owner) reported, the region attached",
         role="supervisor", tags=TAGS, query=[FORMAT, PHONE_COL, NAME_COL, KEEP_COLS,
                                              SKIP_CUSTOMERS],
         body={"type": "string", "format": "binary"}, body_type="text/csv",
         errors=[413, 422], response=REPORT)  # fmt: skip
    async def import_list(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        list_id = _path_id(request)
        if await self.store.lead_list(list_id) is None:
            raise NotFound("no such list")
        keep = [c.strip() for c in KEEP_COLS.read(request).split(",") if c.strip()]
        mapping = Mapping(PHONE_COL.read(request), NAME_COL.read(request), keep)
        table = await self._table(request)
        async with self._work:
            try:
                cleaned = await asyncio.to_thread(clean, table, mapping, self.store.region)
            except SheetError as exc:
                raise ApiError(str(exc), status=422, code="bad-mapping") from None
        report = await self.store.import_leads(
            list_id, cleaned, skip_customers=SKIP_CUSTOMERS.read(request)
        )
        await audit(request, "outbound.list.import", target_type="outbound_list",
                    target_id=list_id,
                    after={k: report[k] for k in ("rows", "kept", "rejected_count",
                                                  "duplicate_count", "dnc_count")})  # fmt: skip
        return web.json_response(report)

    # --- leads -------------------------------------------------------------------------------
    @doc("Leads of a campaign or list", role="supervisor", tags=TAGS,
         query=[CAMPAIGN_ID, LIST_ID, LEAD_STATUS, LIMIT, OFFSET],
         response=obj({"leads": arr(obj())}))  # fmt: skip
    async def list_leads(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        leads = await self.store.leads(
            campaign_id=CAMPAIGN_ID.read(request), list_id=LIST_ID.read(request),
            status=LEAD_STATUS.read(request) or "", limit=LIMIT.value(request),
            offset=OFFSET.value(request),
        )  # fmt: skip
        return web.json_response({"leads": leads})

    @doc("Reassign leads to an agent (\"\": anyone)", role="supervisor", tags=TAGS,
         body=_ReassignIn, response=obj({"changed": INT}))  # fmt: skip
    async def reassign(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        data = await model_body(request, _ReassignIn)
        changed = await self.store.reassign(data.leads, data.agent)
        await audit(request, "outbound.leads.reassign", target_type="outbound_lead",
                    after={"leads": data.leads[:100], "agent": data.agent})  # fmt: skip
        return web.json_response({"changed": changed})

    # --- the agent's side --------------------------------------------------------------------
    async def _card(self, lead: dict[str, Any]) -> dict[str, Any]:
        campaign = await self.store.campaign(lead["campaign_id"]) or {}
        return {**lead, "campaign": campaign.get("name", ""),
                "campaign_title": campaign.get("title", ""),
                "script": campaign.get("script", "")}  # fmt: skip

    @doc("The running campaigns the signed-in agent works (preview: it asks for leads)",
         tags=TAGS, response=obj({"campaigns": arr(obj())}))  # fmt: skip
    async def my_campaigns(self, request: web.Request) -> web.Response:
        me = principal(request).name
        out = [
            {k: c[k] for k in ("id", "name", "title", "mode", "status")}
            for c in await self.store.campaigns()
            if c["status"] == "running" and (not c["agents"] or me in c["agents"])
        ]
        return web.json_response({"campaigns": out})

    @doc("The lead of the signed-in agent's campaign call (the card to show), or the lead "
         "it previews", tags=TAGS,
         response=obj({"state": STR, "lead": {"type": ["object", "null"]}}))  # fmt: skip
    async def my_lead(self, request: web.Request) -> web.Response:
        me = principal(request).name
        if self.dialer is not None:
            for call in self.dialer.calls.values():
                if call.agent == me and (call.connected_at or call.agent_first):
                    lead = await self.store.lead(call.lead["id"])
                    if lead is not None:
                        state = "connected" if call.connected_at else "dialing"
                        return web.json_response({"state": state, "linkedid": call.linkedid,
                                                  "lead": await self._card(lead)})  # fmt: skip
        held = await self.store.leads(status="preview", agent=me, limit=1)
        if held:
            return web.json_response({"state": "preview", "lead": await self._card(held[0])})
        return web.json_response({"state": "idle", "lead": None})

    @doc("Preview mode: the next lead of a campaign for the signed-in agent (held for it "
         "until it dials or skips)", tags=TAGS, errors=[403, 409],
         response=obj({"lead": {"type": ["object", "null"]}}))  # fmt: skip
    async def next_lead(self, request: web.Request) -> web.Response:
        me = principal(request).name
        campaign = await self._campaign(request)
        if campaign["agents"] and me not in campaign["agents"]:
            raise ApiError("you are not an agent of this campaign", status=403,
                           code="not-in-campaign")  # fmt: skip
        if campaign["status"] != "running":
            raise Conflict("the campaign is not running")
        lead = await self.store.claim_preview(campaign["id"], me, self.store.clock())
        return web.json_response({"lead": None if lead is None else await self._card(lead)})

    async def _my_lead(self, request: web.Request, *, supervisor_ok: bool) -> dict[str, Any]:
        p = principal(request)
        lead = await self.store.lead(_path_id(request))
        if lead is None or (
            lead["agent"] != p.name and not (supervisor_ok and p.at_least("supervisor"))
        ):
            raise NotFound("no such lead of yours")  # fmt: skip
        return lead

    @doc("Preview mode: dial the lead the agent previews (its phone rings, then the "
         "customer's); the dial policy applies", tags=TAGS, status=202,
         errors=[403, 409, 503], response=obj({"linkedid": STR}))  # fmt: skip
    async def dial_lead(self, request: web.Request) -> web.Response:
        lead = await self._my_lead(request, supervisor_ok=False)
        if lead["status"] != "preview":
            raise Conflict("the lead is not in preview")
        if self.dialer is None:
            raise ApiError("the dialer is not running", status=503, code="unavailable")
        try:
            call = await self.dialer.dial_preview(lead["campaign_id"], lead, lead["agent"])
        except DialError as exc:
            status = {"dnc": 403, "unavailable": 503}.get(exc.code, 409)
            raise ApiError(str(exc), status=status, code=f"dial-{exc.code}") from None
        return web.json_response({"linkedid": call.linkedid}, status=202)

    @doc("Preview mode: skip the lead (it comes back in an hour)", tags=TAGS,
         errors=[409], response=obj())  # fmt: skip
    async def skip_lead(self, request: web.Request) -> web.Response:
        lead = await self._my_lead(request, supervisor_ok=False)
        later = self.store.clock() + timedelta(hours=1)
        if not await self.store.update_lead(lead["id"], ["preview"], status="retry", agent="",
                                            next_at=later, last_outcome="skipped"):  # fmt: skip
            raise Conflict("the lead is not in preview")
        return web.json_response(await self.store.lead(lead["id"]))

    @doc("The agent's outcome of a lead's call: interested, not interested, wrong number, "
         "callback (at callback_at, with the same agent), sale (a sale or an interest "
         "becomes a customer/opportunity in the CRM), dnc (do not call me)", tags=TAGS,
         body=_OutcomeIn, errors=[409, 422],
         response=obj({"lead": obj(), "crm": obj()}))  # fmt: skip
    async def lead_outcome(self, request: web.Request) -> web.Response:
        p = principal(request)
        lead = await self._my_lead(request, supervisor_ok=True)
        data = await model_body(request, _OutcomeIn)
        now = self.store.clock()
        if data.outcome == "callback":
            if data.callback_at is None or data.callback_at <= now:
                raise ApiError("callback_at: a time in the future", status=422,
                               code="bad-callback")  # fmt: skip
        values: dict[str, Any] = {"status": _AFTER[data.outcome], "disposition": data.outcome,
                                  "note": data.note}  # fmt: skip
        if data.outcome == "callback":
            values.update(next_at=data.callback_at, agent=lead["agent"] or p.name)
        if data.outcome == "dnc":
            campaign = await self.store.campaign(lead["campaign_id"]) or {}
            why = f"asked on a call ({campaign.get('name', '')})"
            await self.store.dnc_add([lead["number"]], scope="", by=p.name, reason=why)
        await self.store.update_lead(lead["id"], None, **values)
        attempt = await self.store.last_attempt(lead["id"])
        if attempt is not None:
            await self.store.update_attempt(attempt["id"], disposition=data.outcome)
        crm: dict[str, Any] = {}
        if data.outcome in ("sale", "interested"):
            crm = await self._convert(lead, data, p.name)
        await audit(request, "outbound.lead.outcome", target_type="outbound_lead",
                    target_id=lead["id"], after={"outcome": data.outcome})  # fmt: skip
        return web.json_response({"lead": await self.store.lead(lead["id"]), "crm": crm})

    async def _convert(self, lead: dict[str, Any], data: _OutcomeIn, agent: str) -> dict[str, Any]:
        sales = self.services.sales
        if sales is None:
            return {"recorded": False, "reason": "no CRM offers a sales pipeline"}
        campaign = await self.store.campaign(lead["campaign_id"]) or {}
        try:
            customer_id = await sales.record_conversion(Conversion(
                number=lead["number"], name=lead["name"], agent=lead["agent"] or agent,
                kind=data.outcome, campaign=str(campaign.get("name", "")), note=data.note,
                customer_id=lead["customer_id"],
            ))  # fmt: skip
        except Exception as exc:
            log.exception("recording a conversion in the CRM failed (lead %s)", lead["id"])
            return {"recorded": False, "reason": f"the CRM refused it: {type(exc).__name__}"}
        await self.store.update_lead(lead["id"], None, customer_id=customer_id)
        return {"recorded": True, "customer_id": customer_id}

    # --- do-not-call -------------------------------------------------------------------------
    @doc("Do-not-call numbers (the company list, a campaign's, or all)", role="supervisor",
         tags=TAGS, query=[SCOPE_FILTER, LIMIT, OFFSET],
         response=obj({"numbers": arr(obj())}))  # fmt: skip
    async def list_dnc(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        scope = SCOPE_FILTER.read(request)
        rows = await self.store.dnc_list(None if scope == "*" else scope,
                                         LIMIT.value(request), OFFSET.value(request))  # fmt: skip
        return web.json_response({"numbers": rows})

    @doc("Put numbers on a do-not-call list (an agent: one number, in one click, on the "
         "company list); their leads are no longer dialled", tags=TAGS, body=_DncIn,
         errors=[422],
         response=obj({"added": INT, "already": INT, "rejected": arr(obj())}))  # fmt: skip
    async def add_dnc(self, request: web.Request) -> web.Response:
        p = principal(request)
        data = await model_body(request, _DncIn)
        if not p.at_least("supervisor") and (len(data.numbers) != 1 or data.scope):
            raise ApiError("agents add one number to the company list", status=403,
                           code="needs-role", details={"role": "supervisor"})  # fmt: skip
        result = await self.store.dnc_add(data.numbers, scope=data.scope,
                                          reason=data.reason, by=p.name)  # fmt: skip
        if not result["added"] and not result["already"]:
            raise ApiError("no valid number", status=422, code="bad-number",
                           details={"rejected": result["rejected"]})  # fmt: skip
        await audit(request, "outbound.dnc.add", target_type="outbound_dnc",
                    target_id=data.scope, after={"numbers": result["numbers"][:100],
                                                 "reason": data.reason})  # fmt: skip
        return web.json_response(result)

    @doc("Import do-not-call numbers from a CSV/XLSX file", role="supervisor", tags=TAGS,
         query=[FORMAT, DNC_COLUMN, SCOPE], body={"type": "string", "format": "binary"},
         body_type="text/csv", errors=[413, 422], response=obj({"added": INT}))  # fmt: skip
    async def import_dnc(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        scope = SCOPE.read(request)
        column = DNC_COLUMN.read(request)
        table = await self._table(request)
        if column and column not in table.header:
            raise ApiError(f"no such column: {column}", status=422, code="bad-mapping")
        i = table.header.index(column) if column else 0
        numbers = [table.header[i]] if not column and parse_number(
            table.header[i], self.store.region)[0] else []  # fmt: skip
        numbers += [row[i] for row in table.rows if i < len(row) and row[i].strip()]
        result = await self.store.dnc_add(numbers, scope=scope, reason="imported",
                                          by=principal(request).name)  # fmt: skip
        await audit(request, "outbound.dnc.import", target_type="outbound_dnc",
                    target_id=scope, after={"added": result["added"]})  # fmt: skip
        return web.json_response(result)

    @doc("Take a number off a do-not-call list", role="supervisor", tags=TAGS,
         query=[NUMBER, SCOPE], response=obj({"removed": BOOL}))  # fmt: skip
    async def remove_dnc(self, request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        number, why = parse_number(NUMBER.read(request), self.store.region)
        if not number:
            raise BadRequest(f"number: {why}")
        scope = SCOPE.read(request)
        removed = await self.store.dnc_remove(number, scope)
        if not removed:
            raise NotFound("the number is not on that list")
        await audit(request, "outbound.dnc.remove", target_type="outbound_dnc",
                    target_id=scope, before={"number": number})  # fmt: skip
        return web.json_response({"removed": True})
