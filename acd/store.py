"""Store access for the ACD: queue/agent configuration, status history, lost callers."""

from __future__ import annotations

import re
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from acd.models import (
    AgentDeviceRow,
    AgentRow,
    AgentStatusRow,
    LostCallerRow,
    QueueRow,
    SkillRow,
)
from acd.queues_conf import BUILTIN_QUEUES, RESERVED_PREFIX, QueueParams
from cti.store.db import Database

__all__ = [
    "DEVICE_KINDS",
    "NAME_RE",
    "STRATEGIES",
    "AgentConfig",
    "ConfigInvalid",
    "delete_agent",
    "delete_queue",
    "get_agent",
    "list_agents",
    "list_queues",
    "pause_time_by_reason",
    "put_agent",
    "put_queue",
    "record_status",
]

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
AGENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
STRATEGIES = ("ringall", "leastrecent", "fewestcalls", "rrmemory", "linear", "wrandom")
DEVICE_KINDS = ("sip", "mobile", "local")
_SIP_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NUM_RE = re.compile(r"\+?[0-9]{2,20}")
_MOH_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INT_LIMITS = {
    "timeout_s": (1, 600), "retry_s": (0, 600), "wrapup_s": (0, 3600),
    "max_wait_s": (1, 86400), "max_len": (0, 10000), "announce_frequency_s": (0, 3600),
    "service_level_s": (1, 3600), "short_abandon_s": (0, 600), "owner_ring_s": (0, 600),
    "periodic_announce_s": (0, 3600), "acw_max_s": (0, 3600),
}  # fmt: skip
LANGUAGES = ("zh", "en")
OVERFLOW_ACTIONS = ("", "queue", "voicemail", "callback")
_MAILBOX_RE = re.compile(r"[0-9]{1,20}")
_KEY_RE = re.compile(r"[0-9]")
#: an Asterisk sound name or an absolute path without extension (no "..", no ",")
_SOUND_RE = re.compile(r"/?[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}")


class ConfigInvalid(ValueError):
    """A configuration value was refused (message meant for the API user)."""


def check_queue_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigInvalid("queue name: 1-64 of a-z 0-9 _ (starting with a letter or digit)")
    if name.startswith(RESERVED_PREFIX):
        raise ConfigInvalid(f"queue names starting with {RESERVED_PREFIX!r} are reserved")
    return name


def check_agent_name(name: str) -> str:
    if not isinstance(name, str) or not AGENT_RE.fullmatch(name):
        raise ConfigInvalid("agent name: 1-64 of A-Z a-z 0-9 _ . @ -")
    return name


def queue_params(name: str, data: dict[str, Any]) -> QueueParams:
    """Validate an API body into :class:`QueueParams` (unknown keys are refused)."""
    check_queue_name(name)
    allowed = {f.name for f in fields(QueueParams)} - {"name"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigInvalid(f"unknown queue field(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in _INT_LIMITS:
            lo, hi = _INT_LIMITS[key]
            if type(value) is not int or not lo <= value <= hi:
                raise ConfigInvalid(f"{key} must be an integer between {lo} and {hi}")
        elif key == "overflow_after_s":
            if value is not None and (type(value) is not int or not 0 <= value <= 86400):
                raise ConfigInvalid("overflow_after_s must be null or 0..86400")
        elif key == "language":
            if value not in LANGUAGES:
                raise ConfigInvalid(f"language must be one of {', '.join(LANGUAGES)}")
        elif key in ("join_empty", "leave_empty", "announce_position", "announce_holdtime",
                     "survey"):  # fmt: skip
            if type(value) is not bool:
                raise ConfigInvalid(f"{key} must be true or false")
        elif key == "strategy":
            if value not in STRATEGIES:
                raise ConfigInvalid(f"strategy must be one of {', '.join(STRATEGIES)}")
        elif key == "music_class":
            if not isinstance(value, str) or not _MOH_RE.fullmatch(value):
                raise ConfigInvalid("music_class: 1-64 of A-Z a-z 0-9 _ -")
        elif key == "overflow_queue":
            if value != "":
                check_queue_name(value)
                if value == name:
                    raise ConfigInvalid("overflow_queue must be another queue")
        elif key == "overflow_action":
            if value not in OVERFLOW_ACTIONS:
                raise ConfigInvalid("overflow_action must be one of queue, voicemail, callback")
        elif key == "overflow_mailbox":
            if not isinstance(value, str) or (value and not _MAILBOX_RE.fullmatch(value)):
                raise ConfigInvalid("overflow_mailbox: a mailbox number (1-20 digits)")
        elif key == "callback_key":
            if not isinstance(value, str) or (value and not _KEY_RE.fullmatch(value)):
                raise ConfigInvalid("callback_key: one digit 0-9, or empty (no callback key)")
        elif key == "periodic_announce":
            if not isinstance(value, str) or (
                value and (not _SOUND_RE.fullmatch(value) or ".." in value)
            ):
                raise ConfigInvalid(
                    "periodic_announce: a sound name or absolute path of letters, digits, "
                    "_ . / - (or empty)"
                )
        values[key] = value
    params = QueueParams(name=name, **values)
    if params.overflow == "queue" and not params.overflow_queue:
        raise ConfigInvalid("overflow_action queue needs overflow_queue")
    if params.overflow == "voicemail" and not params.overflow_mailbox:
        raise ConfigInvalid("overflow_action voicemail needs overflow_mailbox")
    if params.periodic_announce_s and not params.periodic_announce:
        raise ConfigInvalid("periodic_announce_s needs periodic_announce (the sound to play)")
    return params


def _row_params(row: QueueRow) -> QueueParams:
    return QueueParams(**{f.name: getattr(row, f.name) for f in fields(QueueParams)})


async def list_queues(db: Database) -> list[QueueParams]:
    """Every configured queue, plus support and sales with defaults when not configured."""
    async with db.session() as s:
        rows = (await s.execute(select(QueueRow).order_by(QueueRow.name))).scalars().all()
    out = {r.name: _row_params(r) for r in rows}
    for name in BUILTIN_QUEUES:
        out.setdefault(name, QueueParams(name))
    return [out[k] for k in sorted(out)]


async def put_queue(db: Database, params: QueueParams) -> None:
    values = asdict(params)
    async with db.session() as s, s.begin():
        row = (await s.execute(select(QueueRow).where(QueueRow.name == params.name))).scalar()
        if row is None:
            s.add(QueueRow(**values))
        else:
            for k, v in values.items():
                setattr(row, k, v)


async def delete_queue(db: Database, name: str) -> bool:
    async with db.session() as s, s.begin():
        result = await s.execute(delete(QueueRow).where(QueueRow.name == name))
        return bool(getattr(result, "rowcount", 0))


# --- agents -------------------------------------------------------------------------------


class AgentConfig(dict[str, Any]):
    """JSON view of one agent (config + current status)."""


def check_device(kind: Any, address: Any) -> tuple[str, str]:
    if kind not in DEVICE_KINDS:
        raise ConfigInvalid(f"device kind must be one of {', '.join(DEVICE_KINDS)}")
    if not isinstance(address, str):
        raise ConfigInvalid("device address must be a string")
    if kind == "sip" and not _SIP_RE.fullmatch(address):
        raise ConfigInvalid("sip device: a PJSIP endpoint name (A-Z a-z 0-9 _ . -)")
    if kind in ("mobile", "local") and not _NUM_RE.fullmatch(address):
        raise ConfigInvalid(f"{kind} device: a number (digits, optional leading +)")
    return kind, address


def interface_of(kind: str, address: str, remote_context: str) -> str:
    """The app_queue member interface of a device."""
    if kind == "sip":
        return f"PJSIP/{address}"
    if kind == "mobile":
        return f"Local/{address.lstrip('+')}@{remote_context}/n"
    return f"Local/{address}@cti-sim-agents/n"


async def _agent_view(s: Any, row: AgentRow) -> AgentConfig:
    devices = (
        await s.execute(
            select(AgentDeviceRow)
            .where(AgentDeviceRow.agent_id == row.id)
            .order_by(AgentDeviceRow.position, AgentDeviceRow.id)
        )
    ).scalars()
    skills = (await s.execute(select(SkillRow).where(SkillRow.agent_id == row.id))).scalars()
    return AgentConfig(
        id=row.id,
        name=row.name,
        display_name=row.display_name,
        status=row.status,
        reason=row.reason,
        status_since=row.status_since.isoformat(),
        interface=row.interface,
        devices=[{"kind": d.kind, "address": d.address} for d in devices],
        skills={k.queue: k.penalty for k in sorted(skills, key=lambda k: k.queue)},
    )


async def get_agent(db: Database, name: str) -> AgentConfig | None:
    async with db.session() as s:
        row = (await s.execute(select(AgentRow).where(AgentRow.name == name))).scalar()
        return None if row is None else await _agent_view(s, row)


async def list_agents(db: Database) -> list[AgentConfig]:
    async with db.session() as s:
        rows = (await s.execute(select(AgentRow).order_by(AgentRow.name))).scalars().all()
        return [await _agent_view(s, r) for r in rows]


async def put_agent(
    db: Database,
    name: str,
    display_name: str,
    devices: list[tuple[str, str]],
    skills: dict[str, int],
) -> None:
    async with db.session() as s, s.begin():
        row = (await s.execute(select(AgentRow).where(AgentRow.name == name))).scalar()
        if row is None:
            row = AgentRow(name=name, display_name=display_name)
            s.add(row)
            await s.flush()
        row.display_name = display_name
        await s.execute(delete(AgentDeviceRow).where(AgentDeviceRow.agent_id == row.id))
        await s.execute(delete(SkillRow).where(SkillRow.agent_id == row.id))
        for i, (kind, address) in enumerate(devices):
            s.add(AgentDeviceRow(agent_id=row.id, kind=kind, address=address, position=i))
        for queue, penalty in skills.items():
            s.add(SkillRow(agent_id=row.id, queue=queue, penalty=penalty))
        try:
            await s.flush()
        except IntegrityError:
            raise ConfigInvalid("duplicate device") from None


async def delete_agent(db: Database, name: str) -> bool:
    async with db.session() as s, s.begin():
        row = (await s.execute(select(AgentRow).where(AgentRow.name == name))).scalar()
        if row is None:
            return False
        await s.execute(delete(AgentDeviceRow).where(AgentDeviceRow.agent_id == row.id))
        await s.execute(delete(SkillRow).where(SkillRow.agent_id == row.id))
        await s.delete(row)
        return True


async def record_status(
    db: Database, agent: str, status: str, reason: str, interface: str, at: datetime, by: str
) -> None:
    """Set the agent's current status and close/open its history periods."""
    async with db.session() as s, s.begin():
        await s.execute(
            update(AgentRow)
            .where(AgentRow.name == agent)
            .values(status=status, reason=reason, status_since=at, interface=interface)
        )
        await s.execute(
            update(AgentStatusRow)
            .where(AgentStatusRow.agent == agent, AgentStatusRow.ended_at.is_(None))
            .values(ended_at=at)
        )
        s.add(
            AgentStatusRow(
                agent=agent, status=status, reason=reason, started_at=at, changed_by=by[:128]
            )
        )


async def status_history(db: Database, agent: str, limit: int = 200) -> list[dict[str, Any]]:
    async with db.session() as s:
        rows = (
            await s.execute(
                select(AgentStatusRow)
                .where(AgentStatusRow.agent == agent)
                .order_by(AgentStatusRow.started_at.desc(), AgentStatusRow.id.desc())
                .limit(limit)
            )
        ).scalars()
        return [
            {
                "status": r.status,
                "reason": r.reason,
                "started_at": r.started_at.isoformat(),
                "ended_at": r.ended_at.isoformat() if r.ended_at else None,
                "changed_by": r.changed_by,
            }
            for r in rows
        ]


async def pause_time_by_reason(
    db: Database, since: datetime, until: datetime
) -> dict[str, dict[str, float]]:
    """Seconds paused per agent and reason within [since, until) (open periods count
    up to ``until``)."""
    async with db.session() as s:
        rows = (
            await s.execute(
                select(AgentStatusRow).where(
                    AgentStatusRow.status == "paused",
                    AgentStatusRow.started_at < until,
                    func.coalesce(AgentStatusRow.ended_at, until) > since,
                )
            )
        ).scalars()
        out: dict[str, dict[str, float]] = {}
        for r in rows:
            start = max(r.started_at, since)
            end = min(r.ended_at or until, until)
            per = out.setdefault(r.agent, {})
            per[r.reason] = per.get(r.reason, 0.0) + max(0.0, (end - start).total_seconds())
        return out


# --- lost callers -------------------------------------------------------------------------


def lost_view(r: LostCallerRow) -> dict[str, Any]:
    return {
        "id": r.id,
        "linkedid": r.linkedid,
        "caller_num": r.caller_num,
        "caller_name": r.caller_name,
        "queue": r.queue,
        "reason": r.reason,
        "wait_s": r.wait_s,
        "lost_at": r.lost_at.isoformat(),
        "closed_at": r.closed_at.isoformat() if r.closed_at else None,
        "closed_by": r.closed_by,
    }


async def list_lost(db: Database, *, open_only: bool, limit: int) -> list[dict[str, Any]]:
    async with db.session() as s:
        q = select(LostCallerRow).order_by(LostCallerRow.lost_at.desc()).limit(limit)
        if open_only:
            q = q.where(LostCallerRow.closed_at.is_(None))
        return [lost_view(r) for r in (await s.execute(q)).scalars()]


async def get_lost(db: Database, lost_id: int) -> dict[str, Any] | None:
    async with db.session() as s:
        row = await s.get(LostCallerRow, lost_id)
        return lost_view(row) if row is not None else None


async def close_lost(db: Database, lost_id: int, at: datetime, by: str) -> bool:
    async with db.session() as s, s.begin():
        result = await s.execute(
            update(LostCallerRow)
            .where(LostCallerRow.id == lost_id, LostCallerRow.closed_at.is_(None))
            .values(closed_at=at, closed_by=by)
        )
        return bool(getattr(result, "rowcount", 0))


# --- queue membership (skills seen from the queue) ------------------------------------------


async def queue_members(db: Database, queue: str) -> dict[str, int]:
    """Agent name -> penalty of every agent with a skill in ``queue``."""
    async with db.session() as s:
        rows = await s.execute(
            select(AgentRow.name, SkillRow.penalty)
            .join(SkillRow, SkillRow.agent_id == AgentRow.id)
            .where(SkillRow.queue == queue)
            .order_by(AgentRow.name)
        )
        return {name: penalty for name, penalty in rows}


async def set_queue_members(db: Database, queue: str, members: dict[str, int]) -> list[str]:
    """Make ``members`` (agent -> penalty) exactly the agents with a skill in ``queue``;
    the other skills of each agent are kept. Returns the agents whose skill in the queue
    changed (added, removed or a new penalty). Raises ConfigInvalid for unknown agents."""
    async with db.session() as s, s.begin():
        agents = {r.name: r.id for r in (await s.execute(select(AgentRow.name, AgentRow.id))).all()}
        unknown = sorted(set(members) - set(agents))
        if unknown:
            raise ConfigInvalid(f"no such agent(s): {', '.join(unknown)}")
        current = {
            r.agent_id: r
            for r in (await s.execute(select(SkillRow).where(SkillRow.queue == queue))).scalars()
        }
        by_id = {v: k for k, v in agents.items()}
        changed: list[str] = []
        for agent_id, row in current.items():
            name = by_id[agent_id]
            if name not in members:
                await s.delete(row)
                changed.append(name)
            elif row.penalty != members[name]:
                row.penalty = members[name]
                changed.append(name)
        for name, penalty in members.items():
            if agents[name] not in current:
                s.add(SkillRow(agent_id=agents[name], queue=queue, penalty=penalty))
                changed.append(name)
        return sorted(changed)
