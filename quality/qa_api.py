"""QA scoring REST API (decision 0026).

Supervisors define forms and score calls (a recording, time-stamped comments); an agent
reads its own evaluations and acknowledges them; reports by agent or form over a period;
a calibration view when several reviewers scored the same call with the same form.

GET  /api/v1/quality/forms                      every role (agents read their results)
POST /api/v1/quality/forms                      supervisor
POST /api/v1/quality/evaluations                supervisor (the reviewer)
GET  /api/v1/quality/evaluations?from&to&agent&form_id&linkedid   (agents: their own)
GET  /api/v1/quality/evaluations/{id}           (agents: their own)
POST /api/v1/quality/evaluations/{id}/acknowledge   the evaluated agent
GET  /api/v1/quality/report?by=agent|form&from&to   supervisor
GET  /api/v1/quality/calibration?linkedid&form_id   supervisor
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cti.web.auth import principal, require_role
from cti.web.body import model_body
from cti.web.errors import BadRequest, Forbidden, NotFound
from cti.web.openapi import arr, doc, obj
from cti.web.params import Choice, Day, Int, Text, date_range
from quality.qa_store import QaStore
from quality.scoring import AnswerError, FormIn

__all__ = ["add_qa_routes"]

ID_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
AGENT_RE = r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}"
FROM = Day(name="from", description="first day (default: today, site time zone)")
TO = Day(name="to", description="last day (default: from; at most 366 days)")
AGENT = Text(name="agent", max_len=64, pattern=AGENT_RE)
LINKEDID = Text(name="linkedid", max_len=64, pattern=ID_RE)
FORM_ID = Int(name="form_id", lo=1, hi=2**31 - 1)
BY = Choice(name="by", choices=("agent", "form"), default="agent")
TAGS = ["quality"]


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_s: float = Field(ge=0, le=86400)  # seconds into the recording
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=2000)]  # fmt: skip


class EvaluationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    form_id: int = Field(ge=1, le=2**31 - 1)
    linkedid: Annotated[str, StringConstraints(pattern=f"^{ID_RE}$")]
    agent: Annotated[str, StringConstraints(pattern=f"^{AGENT_RE}$")]
    recording_id: int | None = Field(None, ge=1, le=2**31 - 1)
    answers: dict[Annotated[str, StringConstraints(max_length=16)], int] = Field(max_length=1000)
    comments: list[CommentIn] = Field(default_factory=list, max_length=200)


def add_qa_routes(app: web.Application, store: QaStore, tz: ZoneInfo) -> None:
    def period(request: web.Request) -> tuple[datetime, datetime]:
        first, last = date_range(request, datetime.now(tz).date())
        return _bounds(first, last, tz)

    @doc("QA scoring forms", tags=TAGS, response=obj({"forms": arr(obj())}))
    async def list_forms(request: web.Request) -> web.Response:
        principal(request)
        return web.json_response({"forms": await store.forms()})

    @doc("Create a QA scoring form", role="supervisor", tags=TAGS, body=FormIn,
         response=obj(), status=201)  # fmt: skip
    async def create_form(request: web.Request) -> web.Response:
        p = require_role(request, "supervisor")
        form = await model_body(request, FormIn)
        return web.json_response(await store.create_form(form, p.name), status=201)

    @doc("Score a call (QA evaluation)", role="supervisor", tags=TAGS, body=EvaluationIn,
         response=obj(), status=201, errors=[404])  # fmt: skip
    async def create_evaluation(request: web.Request) -> web.Response:
        p = require_role(request, "supervisor")
        data = await model_body(request, EvaluationIn)
        try:
            out = await store.evaluate(
                form_id=data.form_id, linkedid=data.linkedid, agent=data.agent,
                reviewer=p.name, recording_id=data.recording_id, answers=dict(data.answers),
                comments=[c.model_dump() for c in sorted(data.comments, key=lambda c: c.at_s)],
            )  # fmt: skip
        except AnswerError as exc:
            raise BadRequest(str(exc)) from None
        if out is None:
            raise NotFound("no such form")
        return web.json_response(out, status=201)

    @doc("QA evaluations (agents: their own)", tags=TAGS,
         query=[FROM, TO, AGENT, FORM_ID, LINKEDID],
         response=obj({"evaluations": arr(obj())}))  # fmt: skip
    async def list_evaluations(request: web.Request) -> web.Response:
        p = principal(request)
        agent = AGENT.read(request)
        if not p.at_least("supervisor"):
            agent = p.name  # an agent sees only its own
        since, until = period(request)
        rows = await store.evaluations(
            since, until, agent=agent, form_id=FORM_ID.read(request),
            linkedid=LINKEDID.read(request),
        )  # fmt: skip
        return web.json_response({"evaluations": rows})

    async def _own(request: web.Request) -> tuple[int, dict[str, Any]]:
        p = principal(request)
        eval_id = int(request.match_info["id"])
        row = await store.evaluation(eval_id)
        if row is None or (not p.at_least("supervisor") and row["agent"] != p.name):
            raise NotFound("no such evaluation")  # another agent's: as if it did not exist
        return eval_id, row

    @doc("One QA evaluation (agents: their own)", tags=TAGS, response=obj(), errors=[404])
    async def get_evaluation(request: web.Request) -> web.Response:
        _, row = await _own(request)
        return web.json_response(row)

    @doc("The evaluated agent acknowledges its QA evaluation", tags=TAGS, response=obj(),
         errors=[404])  # fmt: skip
    async def acknowledge(request: web.Request) -> web.Response:
        p = principal(request)
        eval_id, row = await _own(request)
        if row["agent"] != p.name:
            raise Forbidden("only the evaluated agent acknowledges")
        out = await store.acknowledge(eval_id, p.name)
        if out is None:
            raise NotFound("no such evaluation")
        return web.json_response(out)

    @doc("QA report by agent or form over a period", role="supervisor", tags=TAGS,
         query=[FROM, TO, BY], response=obj({"rows": arr(obj())}))  # fmt: skip
    async def report(request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        since, until = period(request)
        rows = await store.evaluations(since, until)
        return web.json_response({"rows": store.report(rows, BY.read(request) or "agent")})

    @doc("Calibration: several reviewers' scores of the same call and form",
         role="supervisor", tags=TAGS, query=[LINKEDID, FORM_ID], response=obj(),
         errors=[404])  # fmt: skip
    async def calibration(request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        linkedid, form_id = LINKEDID.read(request), FORM_ID.read(request)
        if not linkedid or form_id is None:
            raise BadRequest("linkedid and form_id are required")
        form = await store.form(form_id)
        if form is None:
            raise NotFound("no such form")
        since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
        rows = await store.evaluations(since, until, form_id=form_id, linkedid=linkedid)
        return web.json_response({"linkedid": linkedid, **store.calibration(form, rows)})

    r = app.router
    r.add_get("/api/v1/quality/forms", list_forms)
    r.add_post("/api/v1/quality/forms", create_form)
    r.add_post("/api/v1/quality/evaluations", create_evaluation)
    r.add_get("/api/v1/quality/evaluations", list_evaluations)
    r.add_get("/api/v1/quality/evaluations/{id:[0-9]{1,9}}", get_evaluation)
    r.add_post("/api/v1/quality/evaluations/{id:[0-9]{1,9}}/acknowledge", acknowledge)
    r.add_get("/api/v1/quality/report", report)
    r.add_get("/api/v1/quality/calibration", calibration)


def _bounds(first: date, last: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(first, time(0), tz)
    end = datetime.combine(last + timedelta(days=1), time(0), tz)
    return start.astimezone(UTC), end.astimezone(UTC)
