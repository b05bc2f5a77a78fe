"""Per-queue recording policy and retention: the config file's, with the console's on top.

``[recordings.queues.<queue>]`` in the config file sets a queue's ``policy`` and
``retention_days``; an admin may change either in the console
(``PUT /api/v1/recordings/policy/queues/{queue}``), which stores it
(``recording_queue_policies``) and applies it at once: the next answered call of that
queue is recorded (or not) by it (the dialplan reads it from globals the recorder sets
on every change, ``on_change``), the next reconcile deletes by it. ``DELETE`` returns
the queue to what the file says. The daemon and ``cti recordings reconcile`` both apply
the stored values on start (:meth:`PolicyBook.load`).

:class:`PolicyBook` keeps the file's table and rewrites ``config.queues`` in place, so
everything that reads the policy (``RecordingsConfig.policy_for`` / ``retention_for``)
sees the values in force without knowing where they came from.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from cti.store.db import Database
from cti.store.models import clip_text
from cti.web.auth import audit, require_role
from cti.web.body import model_body
from cti.web.errors import NotFound
from cti.web.openapi import arr, doc, obj
from recordings.config import QueueRecording, RecordingsConfig
from recordings.models import QueuePolicyRow

__all__ = ["PolicyBook", "add_policy_routes"]

QUEUE = r"{queue:[a-z0-9][a-z0-9_]{0,63}}"
_VIEW = obj({"queue": {"type": "string"}, "policy": {"type": "string"},
             "retention_days": {"type": "integer"}, "file": {}, "console": {}})  # fmt: skip


class PolicyIn(BaseModel):
    """A queue's console values; null (or absent) leaves that field to the config file."""

    model_config = ConfigDict(extra="forbid", strict=True)
    policy: Literal["always", "never", "on_demand"] | None = None
    retention_days: int | None = Field(default=None, ge=1, le=36500)


def _json(q: QueueRecording | None) -> dict[str, Any] | None:
    return None if q is None else q.model_dump()


class PolicyBook:
    def __init__(
        self,
        config: RecordingsConfig,
        db: Database,
        on_change: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.db = db
        #: called with the queue after a change is applied (the dialplan's globals)
        self.on_change = on_change
        self.from_file: dict[str, QueueRecording] = dict(config.queues)
        self.from_console: dict[str, QueueRecording] = {}

    def _apply(self) -> None:
        merged = dict(self.from_file)
        for queue, mine in self.from_console.items():
            base = merged.get(queue) or QueueRecording()
            merged[queue] = QueueRecording(
                policy=mine.policy if mine.policy is not None else base.policy,
                retention_days=(
                    mine.retention_days if mine.retention_days is not None
                    else base.retention_days
                ),
            )  # fmt: skip
        self.config.queues.clear()
        self.config.queues.update(merged)

    async def load(self) -> None:
        async with self.db.session() as s:
            rows = (await s.execute(select(QueuePolicyRow))).scalars().all()
        self.from_console = {
            r.queue: QueueRecording.model_validate(
                {"policy": r.policy, "retention_days": r.retention_days}
            )
            for r in rows
        }
        self._apply()

    async def set(self, queue: str, values: PolicyIn | None, by: str) -> None:
        """Store and apply a queue's console values (None: back to the file's)."""
        async with self.db.session() as s, s.begin():
            row = await s.get(QueuePolicyRow, queue)
            if values is None or (values.policy is None and values.retention_days is None):
                if row is not None:
                    await s.delete(row)
                self.from_console.pop(queue, None)
            else:
                if row is None:
                    row = QueuePolicyRow(queue=queue)
                    s.add(row)
                row.policy = values.policy
                row.retention_days = values.retention_days
                row.updated_by = clip_text(by, 128)
                self.from_console[queue] = QueueRecording(
                    policy=values.policy, retention_days=values.retention_days
                )
        self._apply()
        if self.on_change is not None:
            await self.on_change(queue)

    def view(self, queue: str) -> dict[str, Any]:
        return {
            "queue": queue,
            "policy": self.config.policy_for(queue),
            "retention_days": self.config.retention_for(queue),
            "file": _json(self.from_file.get(queue)),
            "console": _json(self.from_console.get(queue)),
        }

    def views(self) -> dict[str, Any]:
        c = self.config
        return {
            "default": {
                "policy": c.policy, "retention_days": c.retention_days,
                "outbound_policy": c.outbound_policy or c.policy,
            },
            "queues": [self.view(q) for q in sorted(c.queues)],
        }  # fmt: skip


def add_policy_routes(app: web.Application, book: PolicyBook) -> None:
    @doc("Recording policy and retention: the default and every queue's, with where each "
         "comes from", role="supervisor", tags=["recordings"],
         response=obj({"default": obj(), "queues": arr(_VIEW)}))  # fmt: skip
    async def get_policy(request: web.Request) -> web.Response:
        require_role(request, "supervisor")
        return web.json_response(book.views())

    @doc("Set a queue's recording policy and/or retention (null: the config file's)",
         role="admin", tags=["recordings"], body=PolicyIn, response=_VIEW)  # fmt: skip
    async def put_queue(request: web.Request) -> web.Response:
        who = require_role(request, "admin")
        queue = request.match_info["queue"]
        values = await model_body(request, PolicyIn)
        before = book.view(queue)
        await book.set(queue, values, who.actor)
        after = book.view(queue)
        await audit(request, "recordings.policy.update", target_type="queue", target_id=queue,
                    before=before, after=after)  # fmt: skip
        return web.json_response(after)

    @doc("Give a queue back to the config file's policy and retention", role="admin",
         tags=["recordings"], response=_VIEW)  # fmt: skip
    async def delete_queue(request: web.Request) -> web.Response:
        who = require_role(request, "admin")
        queue = request.match_info["queue"]
        if queue not in book.from_console:
            raise NotFound("this queue has no policy set in the console")
        before = book.view(queue)
        await book.set(queue, None, who.actor)
        after = book.view(queue)
        await audit(request, "recordings.policy.delete", target_type="queue", target_id=queue,
                    before=before, after=after)  # fmt: skip
        return web.json_response(after)

    app.router.add_get("/api/v1/recordings/policy", get_policy)
    app.router.add_put(f"/api/v1/recordings/policy/queues/{QUEUE}", put_queue)
    app.router.add_delete(f"/api/v1/recordings/policy/queues/{QUEUE}", delete_queue)
