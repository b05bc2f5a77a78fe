"""The quality store: survey answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from cti.store.db import Database
from cti.store.insert import insert_ignore
from quality.models import SurveyRow

__all__ = ["add_survey", "list_surveys"]


async def add_survey(
    db: Database, *, linkedid: str, callid: str, queue: str, agent: str, language: str,
    score: int, at: datetime,
) -> None:  # fmt: skip
    """Keep one answer (a repeated one for the same queue call is ignored)."""
    values = {"linkedid": linkedid, "callid": callid, "queue": queue, "agent": agent,
              "language": language, "score": score, "at": at}  # fmt: skip
    async with db.session() as s, s.begin():
        await s.execute(insert_ignore(s, SurveyRow).values(values))


async def list_surveys(
    db: Database, since: datetime, until: datetime, *, agent: str = "", queue: str = ""
) -> list[dict[str, Any]]:
    q = select(SurveyRow).where(SurveyRow.at >= since, SurveyRow.at < until)
    if agent:
        q = q.where(SurveyRow.agent == agent)
    if queue:
        q = q.where(SurveyRow.queue == queue)
    async with db.session() as s:
        rows = (await s.execute(q.order_by(SurveyRow.at, SurveyRow.id).limit(10_000))).scalars()
        return [
            {"linkedid": r.linkedid, "callid": r.callid, "queue": r.queue, "agent": r.agent,
             "language": r.language, "score": r.score, "at": r.at.isoformat()}
            for r in rows
        ]  # fmt: skip
