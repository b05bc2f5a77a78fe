"""The outbound store: campaigns, lists, leads, attempts and the do-not-call list.

:class:`OutboundStore` is also the platform's :class:`cti.services.DoNotCallList`
(``is_blocked``): the dial policy asks it before every dial, click-to-call included.
Imports run in one transaction per list: numbers already in the list, do-not-call hits
(company or the campaign's own) and, when asked, numbers of existing CRM customers
(found through :class:`cti.services.CustomerDirectory`, the owning agent named) are
left out, and the report says why for every row not kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from cti.services import CustomerDirectory
from cti.store.db import Database
from cti.store.models import Call, clip_text, utcnow
from outbound.cleaning import REPORT_LIMIT, Cleaned, parse_number
from outbound.models import AttemptRow, CampaignRow, DncRow, LeadListRow, LeadRow
from outbound.schemas import CampaignIn, CampaignPatch

__all__ = ["CampaignExists", "OutboundStore", "campaign_view", "lead_view"]

#: concurrent CRM look-ups during an import
LOOKUP_CONCURRENCY = 8


class CampaignExists(ValueError):
    pass


def campaign_view(row: CampaignRow) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name, "title": row.title, "mode": row.mode,
        "status": row.status, **row.settings,
        "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
    }  # fmt: skip


def list_view(row: LeadListRow, counts: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": row.id, "campaign_id": row.campaign_id, "name": row.name, "active": row.active,
        "created_by": row.created_by, "created_at": row.created_at.isoformat(),
        "report": row.report, "leads": counts or {},
    }  # fmt: skip


def lead_view(row: LeadRow) -> dict[str, Any]:
    return {
        "id": row.id, "list_id": row.list_id, "campaign_id": row.campaign_id,
        "number": row.number, "name": row.name, "region": row.region,
        "region_en": row.region_en, "data": row.data, "customer_id": row.customer_id,
        "owner_agent": row.owner_agent, "status": row.status, "attempts": row.attempts,
        "next_at": row.next_at.isoformat() if row.next_at else None, "agent": row.agent,
        "last_outcome": row.last_outcome, "disposition": row.disposition, "note": row.note,
    }  # fmt: skip


def dnc_view(row: DncRow) -> dict[str, Any]:
    return {"id": row.id, "number": row.number, "scope": row.scope, "reason": row.reason,
            "added_by": row.added_by, "added_at": row.added_at.isoformat()}  # fmt: skip


class OutboundStore:
    def __init__(
        self,
        db: Database,
        region: str,
        directory: Callable[[], CustomerDirectory | None] = lambda: None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.region = region
        self.directory = directory
        self.clock = clock

    # --- campaigns ---------------------------------------------------------------------------
    async def create_campaign(self, data: CampaignIn) -> dict[str, Any]:
        settings = data.model_dump(mode="json", exclude={"name", "title", "mode"})
        now = self.clock()
        try:
            async with self.db.session() as s, s.begin():
                row = CampaignRow(name=data.name, title=data.title, mode=data.mode,
                                  status="draft", settings=settings, created_at=now,
                                  updated_at=now)  # fmt: skip
                s.add(row)
                await s.flush()
                return campaign_view(row)
        except IntegrityError:
            raise CampaignExists(f"a campaign named {data.name} exists") from None

    async def update_campaign(self, cid: int, patch: CampaignPatch) -> dict[str, Any] | None:
        values = patch.model_dump(mode="json", exclude_unset=True)
        async with self.db.session() as s, s.begin():
            row = await s.get(CampaignRow, cid)
            if row is None:
                return None
            if "title" in values:
                row.title = values.pop("title") or ""
            mode = values.pop("mode", None)
            if mode is not None:
                row.mode = mode
            merged = dict(row.settings)
            merged.update({k: v for k, v in values.items() if v is not None})
            CampaignIn.model_validate({"name": row.name, **merged})  # still whole and valid
            row.settings = merged
            row.updated_at = self.clock()
            await s.flush()
            return campaign_view(row)

    async def campaign(self, cid: int) -> dict[str, Any] | None:
        async with self.db.session() as s:
            row = await s.get(CampaignRow, cid)
            return None if row is None else campaign_view(row)

    async def campaign_named(self, name: str) -> dict[str, Any] | None:
        async with self.db.session() as s:
            row = (await s.scalars(select(CampaignRow).where(CampaignRow.name == name))).first()
            return None if row is None else campaign_view(row)

    async def campaigns(self) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            rows = await s.scalars(select(CampaignRow).order_by(CampaignRow.id))
            return [campaign_view(r) for r in rows]

    async def set_status(self, cid: int, status: str, from_status: Iterable[str]) -> bool:
        async with self.db.session() as s, s.begin():
            result = await s.execute(
                update(CampaignRow)
                .where(CampaignRow.id == cid, CampaignRow.status.in_(list(from_status)))
                .values(status=status, updated_at=self.clock())
            )
            return bool(getattr(result, "rowcount", 0))

    # --- lists and leads ---------------------------------------------------------------------
    async def create_list(self, campaign_id: int, name: str, by: str) -> dict[str, Any]:
        async with self.db.session() as s, s.begin():
            row = LeadListRow(campaign_id=campaign_id, name=clip_text(name, 128), active=True,
                              report={}, created_by=clip_text(by, 128),
                              created_at=self.clock())  # fmt: skip
            s.add(row)
            await s.flush()
            return list_view(row)

    async def lead_list(self, list_id: int) -> dict[str, Any] | None:
        async with self.db.session() as s:
            row = await s.get(LeadListRow, list_id)
            if row is None:
                return None
            counts = await self._counts(s, LeadRow.list_id == list_id)
            return list_view(row, counts)

    async def lists(self, campaign_id: int) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            rows = list(await s.scalars(select(LeadListRow)
                                        .where(LeadListRow.campaign_id == campaign_id)
                                        .order_by(LeadListRow.id)))  # fmt: skip
            return [list_view(r, await self._counts(s, LeadRow.list_id == r.id)) for r in rows]

    @staticmethod
    async def _counts(s: Any, where: Any) -> dict[str, int]:
        rows = await s.execute(
            select(LeadRow.status, func.count()).where(where).group_by(LeadRow.status)
        )
        return {str(status): int(n) for status, n in rows}

    async def import_leads(
        self, list_id: int, cleaned: Cleaned, *, skip_customers: bool = False
    ) -> dict[str, Any]:
        """Store ``cleaned``'s candidates in list ``list_id``; the import report."""
        async with self.db.session() as s:
            lst = await s.get(LeadListRow, list_id)
            if lst is None:
                raise LookupError("no such list")
            campaign = await s.get(CampaignRow, lst.campaign_id)
            assert campaign is not None
            numbers = [c.number for c in cleaned.candidates]
            in_list = await self._existing(s, LeadRow.list_id == list_id, LeadRow.number, numbers)
            blocked = await self._blocked(s, numbers, campaign.name)
        customers = await self._customers([n for n in numbers if n not in in_list])
        report: dict[str, Any] = {
            "rows": cleaned.rows, "kept": 0,
            "rejected": cleaned.rejected, "rejected_count": cleaned.rejected_count,
            "duplicates": list(cleaned.duplicates),
            "duplicate_count": cleaned.duplicate_count,
            "dnc": [], "dnc_count": 0, "customers": [], "customer_count": 0, "regions": {},
        }  # fmt: skip
        rows: list[LeadRow] = []
        now = self.clock()
        for c in cleaned.candidates:
            if c.number in in_list:
                report["duplicate_count"] += 1
                _add(report["duplicates"], {"line": c.line, "number": c.number,
                                            "in_list": True})  # fmt: skip
                continue
            if c.number in blocked:
                report["dnc_count"] += 1
                _add(report["dnc"], {"line": c.line, "number": c.number,
                                     "scope": blocked[c.number]})  # fmt: skip
                continue
            card = customers.get(c.number)
            if card is not None:
                report["customer_count"] += 1
                _add(report["customers"], {
                    "line": c.line, "number": c.number, "customer_id": card[0],
                    "customer": card[1], "owner_agent": card[2], "kept": not skip_customers,
                })  # fmt: skip
                if skip_customers:
                    continue
            regions = report["regions"]
            regions[c.region or "?"] = regions.get(c.region or "?", 0) + 1
            rows.append(LeadRow(
                list_id=list_id, campaign_id=lst.campaign_id, number=c.number,
                name=clip_text(c.name, 200), region=clip_text(c.region, 128),
                region_en=clip_text(c.region_en, 128),
                data={clip_text(k, 64): clip_text(v, 500) for k, v in c.data.items()},
                customer_id=card[0] if card else None,
                owner_agent=clip_text(card[2], 128) if card else "",
                status="new", attempts=0, next_at=None, agent="", last_outcome="",
                disposition="", note="", updated_at=now,
            ))  # fmt: skip
        report["kept"] = len(rows)
        async with self.db.session() as s, s.begin():
            s.add_all(rows)
            lst2 = await s.get(LeadListRow, list_id)
            assert lst2 is not None
            lst2.report = report
        return report

    @staticmethod
    async def _existing(s: Any, where: Any, column: Any, numbers: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(numbers), 500):
            chunk = numbers[i : i + 500]
            found.update(await s.scalars(select(column).where(where, column.in_(chunk))))
        return found

    @staticmethod
    async def _blocked(s: Any, numbers: Sequence[str], campaign: str) -> dict[str, str]:
        """number → "company" or "campaign" for the numbers on a do-not-call list."""
        out: dict[str, str] = {}
        for i in range(0, len(numbers), 500):
            chunk = numbers[i : i + 500]
            rows = await s.execute(
                select(DncRow.number, DncRow.scope).where(
                    DncRow.number.in_(chunk), DncRow.scope.in_(["", campaign])
                )
            )
            for number, scope in rows:
                if out.get(number) != "company":
                    out[number] = "company" if scope == "" else "campaign"
        return out

    async def _customers(self, numbers: Sequence[str]) -> dict[str, tuple[int, str, str]]:
        directory = self.directory()
        if directory is None or not numbers:
            return {}
        gate = asyncio.Semaphore(LOOKUP_CONCURRENCY)
        out: dict[str, tuple[int, str, str]] = {}

        async def one(number: str) -> None:
            async with gate:
                card = await directory.lookup_number(number)
            if card is not None:
                out[number] = (card.customer_id, card.name, card.owner_agent)

        await asyncio.gather(*(one(n) for n in numbers))
        return out

    async def leads(
        self, *, campaign_id: int | None = None, list_id: int | None = None,
        status: str = "", limit: int = 200, offset: int = 0, agent: str | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        q = select(LeadRow).order_by(LeadRow.id)
        if agent is not None:
            q = q.where(LeadRow.agent == agent)
        if campaign_id is not None:
            q = q.where(LeadRow.campaign_id == campaign_id)
        if list_id is not None:
            q = q.where(LeadRow.list_id == list_id)
        if status:
            q = q.where(LeadRow.status == status)
        async with self.db.session() as s:
            return [lead_view(r) for r in await s.scalars(q.limit(limit).offset(offset))]

    async def lead(self, lead_id: int) -> dict[str, Any] | None:
        async with self.db.session() as s:
            row = await s.get(LeadRow, lead_id)
            return None if row is None else lead_view(row)

    async def update_lead(self, lead_id: int, from_status: Iterable[str] | None,
                          **values: Any) -> bool:  # fmt: skip
        """Set ``values`` on a lead (if it is in one of ``from_status``, when given)."""
        q = update(LeadRow).where(LeadRow.id == lead_id)
        if from_status is not None:
            q = q.where(LeadRow.status.in_(list(from_status)))
        async with self.db.session() as s, s.begin():
            result = await s.execute(q.values(updated_at=self.clock(), **values))
            return bool(getattr(result, "rowcount", 0))

    async def reassign(self, lead_ids: Sequence[int], agent: str) -> int:
        async with self.db.session() as s, s.begin():
            result = await s.execute(
                update(LeadRow).where(LeadRow.id.in_(list(lead_ids)))
                .values(agent=clip_text(agent, 128), updated_at=self.clock())
            )  # fmt: skip
            return int(getattr(result, "rowcount", 0))

    # --- dialing -----------------------------------------------------------------------------
    async def claim_due(self, campaign_id: int, now: datetime, n: int,
                        server: str = "") -> list[dict[str, Any]]:  # fmt: skip
        """Up to ``n`` leads due for a call (new, or a retry whose time came), each moved
        to ``dialing`` with one more attempt; a lead another dialer claimed first is
        skipped. On PostgreSQL one statement claims them (``FOR UPDATE SKIP LOCKED``:
        pacers of several servers claiming at once each get other leads, none waits);
        on SQLite (one writer) each move is conditional."""
        if n <= 0:
            return []
        active = select(LeadListRow.id).where(LeadListRow.campaign_id == campaign_id,
                                              LeadListRow.active.is_(True))  # fmt: skip
        due = (LeadRow.campaign_id == campaign_id, LeadRow.status.in_(["new", "retry"]),
               (LeadRow.next_at.is_(None)) | (LeadRow.next_at <= now),
               LeadRow.list_id.in_(active.scalar_subquery()))  # fmt: skip
        order = (LeadRow.next_at.is_(None), LeadRow.next_at, LeadRow.id)
        if self.db.dialect == "postgresql":
            pick = (select(LeadRow.id).where(*due).order_by(*order).limit(n)
                    .with_for_update(skip_locked=True))  # fmt: skip
            claim = (
                update(LeadRow)
                .where(LeadRow.id.in_(pick.scalar_subquery()),
                       LeadRow.status.in_(["new", "retry"]))
                .values(status="dialing", attempts=LeadRow.attempts + 1, updated_at=now,
                            server=server)
                .returning(LeadRow)
                .execution_options(synchronize_session=False)
            )  # fmt: skip
            async with self.db.session() as s, s.begin():
                rows = list(await s.scalars(claim))
                return sorted(
                    (lead_view(r) for r in rows),
                    key=lambda v: (v["next_at"] is None, v["next_at"] or "", v["id"]),
                )
        q = select(LeadRow.id).where(*due).order_by(*order).limit(n * 2)
        claimed: list[dict[str, Any]] = []
        async with self.db.session() as s:
            ids = list(await s.scalars(q))
        for lead_id in ids:
            if len(claimed) >= n:
                break
            async with self.db.session() as s, s.begin():
                result = await s.execute(
                    update(LeadRow)
                    .where(LeadRow.id == lead_id, LeadRow.status.in_(["new", "retry"]))
                    .values(
                        status="dialing",
                        attempts=LeadRow.attempts + 1,
                        updated_at=now,
                        server=server,
                    )
                )
                if getattr(result, "rowcount", 0):
                    row = await s.get(LeadRow, lead_id)
                    assert row is not None
                    await s.refresh(row)
                    claimed.append(lead_view(row))
        return claimed

    async def claim_preview(self, campaign_id: int, agent: str,
                            now: datetime) -> dict[str, Any] | None:  # fmt: skip
        """The lead ``agent`` previews in this campaign: the one it holds, else the next
        due lead (moved to ``preview``, held by the agent)."""
        async with self.db.session() as s:
            held = (await s.scalars(select(LeadRow).where(
                LeadRow.campaign_id == campaign_id, LeadRow.status == "preview",
                LeadRow.agent == agent).limit(1))).first()  # fmt: skip
            if held is not None:
                return lead_view(held)
        active = select(LeadListRow.id).where(LeadListRow.campaign_id == campaign_id,
                                              LeadListRow.active.is_(True))  # fmt: skip
        q = (
            select(LeadRow.id)
            .where(LeadRow.campaign_id == campaign_id, LeadRow.status.in_(["new", "retry"]),
                   (LeadRow.next_at.is_(None)) | (LeadRow.next_at <= now),
                   LeadRow.agent.in_(["", agent]),
                   LeadRow.list_id.in_(active.scalar_subquery()))
            .order_by(LeadRow.next_at.is_(None), LeadRow.next_at, LeadRow.id)
            .limit(20)
        )  # fmt: skip
        async with self.db.session() as s:
            ids = list(await s.scalars(q))
        for lead_id in ids:
            if await self.update_lead(lead_id, ["new", "retry"], status="preview",
                                      agent=clip_text(agent, 128)):  # fmt: skip
                return await self.lead(lead_id)
        return None

    async def due_callbacks(self, campaign_id: int, now: datetime) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            rows = await s.scalars(select(LeadRow).where(
                LeadRow.campaign_id == campaign_id, LeadRow.status == "callback",
                LeadRow.next_at <= now).order_by(LeadRow.next_at).limit(50))  # fmt: skip
            return [lead_view(r) for r in rows]

    async def last_attempt(self, lead_id: int) -> dict[str, Any] | None:
        async with self.db.session() as s:
            row = (await s.scalars(select(AttemptRow).where(AttemptRow.lead_id == lead_id)
                                   .order_by(AttemptRow.id.desc()).limit(1))).first()  # fmt: skip
            if row is None:
                return None
            return {c.name: _plain(getattr(row, c.name)) for c in AttemptRow.__table__.columns}

    async def recycle(self, *, campaign_id: int | None = None, list_id: int | None = None,
                      outcomes: Sequence[str] = ("no_answer",),
                      finished_before: datetime | None = None) -> int:  # fmt: skip
        """Finished leads whose last call ended with one of ``outcomes`` (and, when
        given, finished before ``finished_before``) are dialled again: status new, no
        attempts counted."""
        q = update(LeadRow).where(LeadRow.status == "done",
                                  LeadRow.last_outcome.in_(list(outcomes)),
                                  LeadRow.disposition == "")  # fmt: skip
        if campaign_id is not None:
            q = q.where(LeadRow.campaign_id == campaign_id)
        if list_id is not None:
            q = q.where(LeadRow.list_id == list_id)
        if finished_before is not None:
            q = q.where(LeadRow.updated_at <= finished_before)
        async with self.db.session() as s, s.begin():
            result = await s.execute(q.values(status="new", attempts=0, next_at=None,
                                              updated_at=self.clock()))  # fmt: skip
            return int(getattr(result, "rowcount", 0))

    async def release_dialing(
        self, campaign_id: int, now: datetime, keep: Iterable[int] = (),
        server: str | None = None,
    ) -> int:  # fmt: skip
        """Leads left ``dialing`` by a dialer that stopped (all but ``keep``; those of
        ``server``'s pacer when given): due again now."""
        kept = list(keep)
        q = update(LeadRow).where(
            LeadRow.campaign_id == campaign_id, LeadRow.status == "dialing", LeadRow.id.not_in(kept)
        )
        if server is not None:
            q = q.where(LeadRow.server == server)
        async with self.db.session() as s, s.begin():
            result = await s.execute(
                q.values(status="retry", next_at=now, updated_at=now)
            )  # fmt: skip
            return int(getattr(result, "rowcount", 0))

    async def open_attempts(
        self, campaign_id: int, skip: Iterable[int] = (), server: str | None = None
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The campaign's leads left ``dialing`` (all but ``skip``) whose last attempt is a
        call placed and not finished (outcome "", a Linkedid) — placed on ``server`` when
        given: (lead, attempt) pairs."""
        skipped = list(skip)
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []
        async with self.db.session() as s:
            leads = list(await s.scalars(select(LeadRow).where(
                LeadRow.campaign_id == campaign_id, LeadRow.status == "dialing",
                LeadRow.id.not_in(skipped))))  # fmt: skip
            for lead in leads:
                last = (select(AttemptRow).where(AttemptRow.lead_id == lead.id)
                        .order_by(AttemptRow.id.desc()).limit(1))  # fmt: skip
                row = (await s.scalars(last)).first()
                if row is None or (server is not None and row.server != server):
                    continue
                if row.outcome == "" and row.linkedid:
                    attempt = {c.name: getattr(row, c.name) for c in AttemptRow.__table__.columns}
                    out.append((lead_view(lead), attempt))
        return out

    async def open_servers(self, campaign_id: int) -> set[str]:
        """The servers the campaign's calls still open (placed, no outcome) were placed
        on."""
        async with self.db.session() as s:
            rows = await s.scalars(
                select(AttemptRow.server).distinct()
                .join(LeadRow, LeadRow.id == AttemptRow.lead_id)
                .where(AttemptRow.campaign_id == campaign_id, AttemptRow.outcome == "",
                       AttemptRow.linkedid != "", LeadRow.status == "dialing")
            )  # fmt: skip
            return {str(r) for r in rows}

    async def answer_counts(self, campaign_id: int, since: datetime) -> tuple[int, int]:
        """(calls that reached an agent, calls dropped) among the campaign's attempts
        started since ``since``, on every server: the abandon cap's window."""
        async with self.db.session() as s:
            connected = await s.scalar(select(func.count()).select_from(AttemptRow).where(
                AttemptRow.campaign_id == campaign_id, AttemptRow.started_at >= since,
                AttemptRow.connected_at.is_not(None)))  # fmt: skip
            dropped = await s.scalar(select(func.count()).select_from(AttemptRow).where(
                AttemptRow.campaign_id == campaign_id, AttemptRow.started_at >= since,
                AttemptRow.outcome == "abandoned"))  # fmt: skip
            return int(connected or 0), int(dropped or 0)

    async def recorded_calls(self, linkedids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The platform's call rows (written by whichever node recorded or recovered the
        call) of ``linkedids``: the facts of calls that ended."""
        if not linkedids:
            return {}
        async with self.db.session() as s:
            rows = await s.scalars(select(Call).where(Call.linkedid.in_(list(linkedids))))
            return {r.linkedid: {"answered_at": r.answered_at, "ended_at": r.ended_at,
                                 "agent": r.agent, "disposition": r.disposition, "queue": r.queue}
                    for r in rows}  # fmt: skip

    async def start_attempt(self, lead: dict[str, Any], linkedid: str, at: datetime,
                            outcome: str = "", server: str = "",
                            agent: str = "") -> int:  # fmt: skip
        """A new attempt; ``agent``: the agent an agent-first call is placed for (a queue
        call's agent is set when it connects)."""
        async with self.db.session() as s, s.begin():
            row = AttemptRow(
                campaign_id=lead["campaign_id"], list_id=lead["list_id"], lead_id=lead["id"],
                number=lead["number"], linkedid=clip_text(linkedid, 64),
                server=clip_text(server, 64), agent=clip_text(agent, 128),
                started_at=at, outcome=outcome, disposition="", talk_s=0.0, wait_s=0.0,
                ended_at=at if outcome else None,
            )  # fmt: skip
            s.add(row)
            await s.flush()
            return int(row.id)

    async def update_attempt(self, attempt_id: int, **values: Any) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(update(AttemptRow).where(AttemptRow.id == attempt_id).values(**values))

    async def due_count(self, campaign_id: int, now: datetime) -> int:
        async with self.db.session() as s:
            return int(await s.scalar(
                select(func.count()).select_from(LeadRow).where(
                    LeadRow.campaign_id == campaign_id, LeadRow.status.in_(["new", "retry"]),
                    (LeadRow.next_at.is_(None)) | (LeadRow.next_at <= now))
            ) or 0)  # fmt: skip

    # --- attempts ----------------------------------------------------------------------------
    async def attempts(self, campaign_id: int, limit: int = 10000) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            rows = await s.scalars(select(AttemptRow).where(AttemptRow.campaign_id == campaign_id)
                                   .order_by(AttemptRow.id).limit(limit))  # fmt: skip
            return [{c.name: _plain(getattr(r, c.name)) for c in AttemptRow.__table__.columns}
                    for r in rows]  # fmt: skip

    # --- do-not-call -------------------------------------------------------------------------
    async def is_blocked(self, e164: str, *, campaign: str = "") -> bool:
        """:class:`cti.services.DoNotCallList`: on the company list or ``campaign``'s."""
        async with self.db.session() as s:
            found = await s.scalar(
                select(DncRow.id).where(DncRow.number == clip_text(e164, 32),
                                        DncRow.scope.in_(["", clip_text(campaign, 64)]))
                .limit(1)
            )  # fmt: skip
        return found is not None

    async def dnc_add(
        self, raw_numbers: Sequence[str], *, scope: str, reason: str, by: str
    ) -> dict[str, Any]:
        """Add numbers (any written form) to a do-not-call list; leads with them stop."""
        added: list[str] = []
        rejected: list[dict[str, Any]] = []
        already = 0
        wanted: dict[str, None] = {}
        for raw in raw_numbers:
            number, why = parse_number(raw, self.region)
            if not number:
                _add(rejected, {"value": str(raw)[:64], "reason": why})
            else:
                wanted[number] = None
        now = self.clock()
        async with self.db.session() as s, s.begin():
            numbers = list(wanted)
            have = await self._existing(s, DncRow.scope == scope, DncRow.number, numbers)
            for number in numbers:
                if number in have:
                    already += 1
                    continue
                s.add(DncRow(number=number, scope=scope, reason=clip_text(reason, 200),
                             added_by=clip_text(by, 128), added_at=now))  # fmt: skip
                added.append(number)
            stop = update(LeadRow).where(
                LeadRow.number.in_(added), LeadRow.status.in_(["new", "retry", "callback"])
            )
            if scope:
                ids = select(CampaignRow.id).where(CampaignRow.name == scope)
                stop = stop.where(LeadRow.campaign_id.in_(ids.scalar_subquery()))
            if added:
                await s.execute(stop.values(status="dnc", updated_at=now))
        return {"added": len(added), "already": already, "rejected": rejected,
                "numbers": added[:REPORT_LIMIT]}  # fmt: skip

    async def dnc_remove(self, number: str, scope: str) -> bool:
        async with self.db.session() as s, s.begin():
            result = await s.execute(
                delete(DncRow).where(DncRow.number == number, DncRow.scope == scope)
            )
            return bool(getattr(result, "rowcount", 0))

    async def dnc_list(self, scope: str | None, limit: int = 500,
                       offset: int = 0) -> list[dict[str, Any]]:  # fmt: skip
        q = select(DncRow).order_by(DncRow.id.desc())
        if scope is not None:
            q = q.where(DncRow.scope == scope)
        async with self.db.session() as s:
            return [dnc_view(r) for r in await s.scalars(q.limit(limit).offset(offset))]


def _add(items: list[dict[str, Any]], item: dict[str, Any]) -> None:
    if len(items) < REPORT_LIMIT:
        items.append(item)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
