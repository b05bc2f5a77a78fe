"""REST routes of call control (under ``/api/v1/calls``; the app checks the token).

Every route names the call by its Linkedid; an agent controls only the call it talks
on, a supervisor any call of the agents and queues of its teams."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from callcontrol.calls import LiveCall
from callcontrol.control import CallControl
from cti.web.auth import require_role
from cti.web.body import model_body
from cti.web.openapi import STR, arr, doc, obj

__all__ = ["add_routes"]

# each may be empty (not given); anchored: pydantic searches, it does not fullmatch
_NAME = r"^(?:[A-Za-z0-9_.@\-]{1,128})?$"
_QUEUE = r"^(?:[a-z0-9_]{1,64})?$"
_NUMBER = r"^(?:\+?[0-9 ()\-]{3,32})?$"


class Transfer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str = Field("", pattern=_NAME)
    queue: str = Field("", pattern=_QUEUE)
    number: str = Field("", pattern=_NUMBER)
    notes: str = Field("", max_length=4000)


class Conference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str = Field("", pattern=_NAME)
    number: str = Field("", pattern=_NUMBER)


class Dtmf(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digits: str = Field(pattern=r"^[0-9*#A-D]{1,32}$")


class TakeOver(BaseModel):
    model_config = ConfigDict(extra="forbid")
    notes: str = Field("", max_length=4000)


CALL = obj({"linkedid": STR, "agent": STR, "agents": arr(STR), "mode": STR})
TARGET = {"agent": STR, "queue": STR, "number": STR, "notes": STR}


class CallControlRoutes:
    def __init__(self, control: CallControl) -> None:
        self.control = control

    def _call(self, request: web.Request, role: str = "agent") -> LiveCall:
        who = require_role(request, role)
        return self.control.call_for(who, request.match_info["linkedid"])

    def _done(self, call: LiveCall, **extra: Any) -> web.Response:
        return web.json_response({**call.view(), **extra})

    @doc("The caller's calls in progress, as call control sees them", tags=["calls"],
         response=obj({"calls": arr(CALL)}))  # fmt: skip
    async def mine(self, request: web.Request) -> web.Response:
        who = require_role(request, "agent")
        return web.json_response({"calls": self.control.mine(who)})

    @doc("Put the caller on hold (the caller hears music)", tags=["calls"], response=CALL)
    async def hold(self, request: web.Request) -> web.Response:
        call = self._call(request)
        await self.control.hold(call)
        return self._done(call)

    @doc("Take the caller off hold", tags=["calls"], response=CALL)
    async def resume(self, request: web.Request) -> web.Response:
        call = self._call(request)
        await self.control.resume(call)
        return self._done(call)

    @doc("Blind transfer to an agent, a queue or an external number (dial policy)",
         tags=["calls"], body=obj(TARGET), response=CALL)  # fmt: skip
    async def transfer(self, request: web.Request) -> web.Response:
        call = self._call(request)
        body = await model_body(request, Transfer)
        target = await self.control.transfer(
            call, require_role(request, "agent"), agent=body.agent, queue=body.queue,
            number=body.number, notes=body.notes,
        )  # fmt: skip
        return self._done(call, target=target)

    @doc("Attended transfer: consult an agent or an external number (the caller waits "
         "on hold); then complete or cancel", tags=["calls"], body=obj(TARGET),
         response=CALL)  # fmt: skip
    async def consult(self, request: web.Request) -> web.Response:
        call = self._call(request)
        body = await model_body(request, Transfer)
        target = await self.control.transfer(
            call, require_role(request, "agent"), agent=body.agent, queue=body.queue,
            number=body.number, notes=body.notes, attended=True,
        )  # fmt: skip
        return self._done(call, target=target)

    @doc("Complete the attended transfer (the caller talks to the consulted party)",
         tags=["calls"], response=CALL)  # fmt: skip
    async def complete(self, request: web.Request) -> web.Response:
        call = self._call(request)
        await self.control.complete(call)
        return self._done(call)

    @doc("Cancel the consultation (back to the caller)", tags=["calls"], response=CALL)
    async def cancel(self, request: web.Request) -> web.Response:
        call = self._call(request)
        await self.control.cancel(call)
        return self._done(call)

    @doc("Add a party (an agent or an external number) to the call: a conference",
         tags=["calls"], body=obj({"agent": STR, "number": STR}), response=CALL)  # fmt: skip
    async def conference(self, request: web.Request) -> web.Response:
        call = self._call(request)
        body = await model_body(request, Conference)
        target = await self.control.conference(
            call, require_role(request, "agent"), agent=body.agent, number=body.number
        )
        return self._done(call, target=target)

    @doc("Hang up (the agent's leg; the caller's call ends with it)", tags=["calls"],
         response=CALL)  # fmt: skip
    async def hangup(self, request: web.Request) -> web.Response:
        call = self._call(request)
        await self.control.hangup(call)
        return self._done(call)

    @doc("Send DTMF digits to the caller's side", tags=["calls"],
         body=obj({"digits": STR}, required=["digits"]), response=CALL)  # fmt: skip
    async def dtmf(self, request: web.Request) -> web.Response:
        call = self._call(request)
        body = await model_body(request, Dtmf)
        await self.control.dtmf(call, body.digits)
        return self._done(call)

    @doc("The agent's browser phone is back: ring it with the caller it lost (answered by "
         "the page itself). The daemon does this by itself when the phone registers again; "
         "this is the page's fallback for a dead leg Asterisk has not noticed yet. "
         "Idempotent (started: false when a reconnect is under way); 409 requeued once "
         "the grace period sent the caller back to the queue", tags=["calls"],
         response=CALL)  # fmt: skip
    async def reconnect(self, request: web.Request) -> web.Response:
        who = require_role(request, "agent")
        call = self.control.reclaimable(who, request.match_info["linkedid"])
        started = await self.control.reconnect(call)  # False: under way already
        return self._done(call, started=started)

    @doc("Supervisor: take the call over (it moves to the supervisor's phone)",
         role="supervisor", tags=["calls"], body=obj({"notes": STR}), body_required=False,
         response=CALL)  # fmt: skip
    async def take_over(self, request: web.Request) -> web.Response:
        call = self._call(request, "supervisor")
        body = await model_body(request, TakeOver) if request.can_read_body else TakeOver()
        await self.control.take_over(call, require_role(request, "supervisor"), body.notes)
        return self._done(call)


def add_routes(app: web.Application, routes: CallControlRoutes) -> None:
    base = "/api/v1/calls"
    app.router.add_get(f"{base}/mine", routes.mine)
    for name in ("hold", "resume", "transfer", "consult", "complete", "cancel",
                 "conference", "hangup", "dtmf", "reconnect"):  # fmt: skip
        app.router.add_post(f"{base}/{{linkedid}}/{name}", getattr(routes, name))
    app.router.add_post(f"{base}/{{linkedid}}/take-over", routes.take_over)
