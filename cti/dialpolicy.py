"""The dial policy every outbound path passes (design.md §5; issue 13 item 5).

Click-to-call, callbacks (requested by a caller, queued, retried, dialled by hand), IVR
forwarding and campaigns ask :meth:`StoreDialPolicy.check` right before they dial, with
what the call is for (``purpose``) and, when a person starts it, who (``agent``). A number
is dialled only if, in this order:

1. it is a valid number (phonenumbers, parsed in the site's default region);
2. it matches no ``deny`` pattern (E.164 prefixes, ``X`` any digit: ``+1900``, ``+44909``);
3. it matches an ``allow`` pattern, or its country is one of ``countries`` (default: the
   site's own) and its type one of ``types`` (default: fixed line, mobile, toll free; so
   premium-rate, shared-cost, personal, UAN, VoIP and unknown numbers are refused, and so
   are other countries, including the NANP's Caribbean "one ring" islands for a US site);
4. the do-not-call list (``Services.do_not_call``, offered by the outbound feature) does
   not block it; if that list cannot be read, the number is refused (compliance first);
5. the agent has not reached its daily limit (``agent_daily_limit``, per-agent
   ``agent_limits``; 0: none), counted per local day of the site in the store. A dial
   that passes counts (also when Asterisk then fails to place it: the limit is about
   what an agent tried).

A refusal is a :class:`~cti.services.DialDecision` with ``allowed=False``, a stable
``code`` (invalid | denied | country | type | dnc | limit) and a ``reason`` meant for the
person who asked; it is logged once per refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import phonenumbers
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.dml import ReturningInsert

from cti.config import DialConfig
from cti.services import DialDecision, Services
from cti.store.db import Database
from cti.store.models import DialCount, clip_text

__all__ = ["StoreDialPolicy", "matches"]

log = logging.getLogger(__name__)

_TYPE_WORDS = {
    "PREMIUM_RATE": "premium-rate numbers",
    "SHARED_COST": "shared-cost numbers",
    "PERSONAL_NUMBER": "personal numbers",
    "UAN": "universal access numbers",
    "VOIP": "VoIP numbers",
    "PAGER": "pagers",
    "VOICEMAIL": "voicemail access numbers",
    "UNKNOWN": "numbers of unknown type",
    "FIXED_LINE": "fixed lines",
    "MOBILE": "mobile numbers",
    "FIXED_LINE_OR_MOBILE": "fixed or mobile numbers",
    "TOLL_FREE": "toll-free numbers",
}


def matches(e164: str, patterns: Sequence[str]) -> str | None:
    """The first pattern ``e164`` starts with (``X`` matches any digit), or None."""
    for pattern in patterns:
        if len(e164) >= len(pattern) and all(
            p == c or (p == "X" and c.isdigit()) for p, c in zip(pattern, e164, strict=False)
        ):
            return pattern
    return None


class StoreDialPolicy:
    """:class:`cti.services.DialPolicy` configured by ``[dial]``, limits in the store."""

    def __init__(
        self,
        config: DialConfig,
        *,
        region: str,
        timezone: str,
        db: Database,
        services: Services,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.region = region.upper()
        self.countries = frozenset(config.countries or [self.region])
        self.types = frozenset(config.types)
        self.tz = ZoneInfo(timezone)
        self.db = db
        self.services = services
        self.clock = clock or (lambda: datetime.now(UTC))

    async def check(
        self, number: str, *, purpose: str, agent: str = "", campaign: str = ""
    ) -> DialDecision:
        decision = await self._decide(number, agent=agent, campaign=campaign)
        if not decision.allowed:
            log.warning(
                "dial refused (%s): %s",
                decision.code, decision.reason,
                extra={"purpose": purpose, "agent": agent, "campaign": campaign,
                       "number": decision.number or clip_text(str(number), 32)},
            )  # fmt: skip
        return decision

    async def _decide(self, number: str, *, agent: str, campaign: str) -> DialDecision:
        e164 = self._e164(number)
        if e164 is None:
            return DialDecision(False, "", "not a valid phone number", "invalid")
        parsed = phonenumbers.parse(e164)
        denied = matches(e164, self.config.deny)
        if denied is not None:
            return DialDecision(False, e164, f"numbers starting {denied} may not be dialled",
                                "denied")  # fmt: skip
        if matches(e164, self.config.allow) is None:
            country = phonenumbers.region_code_for_number(parsed) or "?"
            if country not in self.countries:
                return DialDecision(False, e164, f"calls to {country} may not be dialled",
                                    "country")  # fmt: skip
            kind = _type_name(phonenumbers.number_type(parsed))
            if kind not in self.types:
                words = _TYPE_WORDS.get(kind, kind.lower())
                return DialDecision(False, e164, f"{words} may not be dialled", "type")
        dnc = self.services.do_not_call
        if dnc is not None:
            try:
                blocked = await dnc.is_blocked(e164, campaign=campaign)
            except Exception:
                log.exception("do-not-call list check failed for %s", e164)
                return DialDecision(False, e164, "the do-not-call list cannot be checked now",
                                    "dnc")  # fmt: skip
            if blocked:
                return DialDecision(False, e164, "the number is on the do-not-call list", "dnc")
        if agent:
            limit = self.config.agent_limits.get(agent, self.config.agent_daily_limit)
            if limit and not await self._count(agent, limit):
                return DialDecision(
                    False, e164, f"{agent} reached the daily limit of {limit} calls", "limit"
                )
        return DialDecision(True, e164)

    def _e164(self, number: str) -> str | None:
        if not isinstance(number, str) or not 2 <= len(number) <= 32:
            return None
        if any(c not in "+0123456789 ()-./" for c in number):
            return None
        try:
            parsed = phonenumbers.parse(number, self.region)
        except phonenumbers.NumberParseException:
            return None
        if not phonenumbers.is_valid_number(parsed):
            return None
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    # --- the daily count ----------------------------------------------------------------------
    def today(self) -> date:
        return self.clock().astimezone(self.tz).date()

    async def _count(self, agent: str, limit: int) -> bool:
        """Count one dial for ``agent`` today if it is under ``limit`` (atomically)."""
        agent = clip_text(agent, 128)
        day = self.today()
        stmt = _upsert(self.db.dialect, agent, day, limit)
        async with self.db.session() as session, session.begin():
            row = (await session.execute(stmt)).first()
        return row is not None

    async def dials_today(self, agent: str) -> int:
        async with self.db.session() as session:
            value = await session.scalar(
                select(DialCount.count).where(
                    DialCount.agent == clip_text(agent, 128), DialCount.day == self.today()
                )
            )
        return int(value or 0)


def _upsert(dialect: str, agent: str, day: date, limit: int) -> ReturningInsert[tuple[int]]:
    """INSERT (agent, day, 1), or add one while under ``limit``; RETURNING the count (no
    row when the limit is reached). SQLite and PostgreSQL only (decision 0002)."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return (
        insert(DialCount)
        .values(agent=agent, day=day, count=1)
        .on_conflict_do_update(
            index_elements=["agent", "day"],
            set_={"count": DialCount.count + 1},
            where=DialCount.count < limit,
        )
        .returning(DialCount.count)
    )


def _type_name(value: int) -> str:
    for name, number in vars(phonenumbers.PhoneNumberType).items():
        if name.isupper() and number == value:
            return name
    return "UNKNOWN"
