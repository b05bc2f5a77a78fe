"""The dial policy (issue 13 item 5) on SQLite and PostgreSQL: what may be dialled, the
do-not-call list, and per-agent daily limits counted atomically in the store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cti.config import ConfigError, DialConfig, load_config
from cti.dialpolicy import StoreDialPolicy, matches
from cti.services import DialDecision, Services
from cti.store.db import Database


class Dnc:
    """A do-not-call list as the outbound feature offers it (cti.services.DoNotCallList)."""

    def __init__(self, blocked: set[str], *, broken: bool = False) -> None:
        self.blocked = blocked
        self.broken = broken
        self.asked: list[tuple[str, str]] = []

    async def is_blocked(self, e164: str, *, campaign: str = "") -> bool:
        self.asked.append((e164, campaign))
        if self.broken:
            raise ConnectionError("DNC store down")
        return e164 in self.blocked


def policy(db: Database, region: str = "CN", services: Services | None = None,
           clock: Any = None, **config: Any) -> StoreDialPolicy:  # fmt: skip
    return StoreDialPolicy(
        DialConfig(**config), region=region, timezone="Asia/Shanghai", db=db,
        services=services or Services(), clock=clock,
    )  # fmt: skip


async def decide(p: StoreDialPolicy, number: str, **kw: str) -> tuple[bool, str, str]:
    d = await p.check(number, purpose=kw.pop("purpose", "click_to_call"), **kw)
    assert isinstance(d, DialDecision)
    return d.allowed, d.code, d.number


CN_DEFAULTS = [
    ("13800138000", (True, "", "+8613800138000")),  # mobile
    ("010-6552 9988", (True, "", "+861065529988")),  # Beijing fixed line
    ("+86 400 123 4567", (False, "type", "+864001234567")),  # shared cost
    ("+1 900 555 0123", (False, "country", "+19005550123")),  # premium, and abroad
    ("+44 909 879 0000", (False, "country", "+449098790000")),
    ("+1 876 555 0123", (False, "country", "+18765550123")),  # Jamaica: "one ring" scam
    ("not a number", (False, "invalid", "")),
    ("", (False, "invalid", "")),
    ("+86 138 0013 8000; Local/x", (False, "invalid", "")),
]


@pytest.mark.parametrize(("number", "expected"), CN_DEFAULTS)
async def test_safe_defaults_for_a_chinese_site(
    db: Database, number: str, expected: tuple[bool, str, str]
) -> None:
    assert await decide(policy(db), number) == expected


US_DEFAULTS = [
    ("+1 900 555 0123", (False, "type")),  # premium rate
    ("(201) 555-0123", (True, "")),
    ("1-800-555-0123", (True, "")),  # toll free
    ("+1 876 555 0123", (False, "country")),  # NANP, but Jamaica
    ("+8613800138000", (False, "country")),
]


@pytest.mark.parametrize(("number", "expected"), US_DEFAULTS)
async def test_safe_defaults_for_a_us_site(
    db: Database, number: str, expected: tuple[bool, str]
) -> None:
    assert (await decide(policy(db, "US"), number))[:2] == expected


async def test_countries_types_deny_and_allow(db: Database) -> None:
    p = policy(db, countries=["CN", "GB"], deny=["+86138001380XX", "+4420"],
               allow=["+1201555"])  # fmt: skip
    assert await decide(p, "+449098790000") == (False, "type", "+449098790000")
    assert (await decide(p, "+44 20 7946 0000"))[:2] == (False, "denied")
    assert (await decide(p, "+86 138 0013 8000"))[:2] == (False, "denied")
    assert (await decide(p, "+86 138 0013 8100"))[:2] == (True, "")
    assert (await decide(p, "+1 201 555 0123"))[:2] == (True, "")  # allowed: another country
    deny_wins = policy(db, allow=["+1900"], deny=["+1900"])
    assert (await decide(deny_wins, "+19005550123"))[:2] == (False, "denied")
    premium_ok = policy(db, "GB", types=["PREMIUM_RATE"])
    assert (await decide(premium_ok, "+449098790000"))[:2] == (True, "")
    d = await p.check("+449098790000", purpose="callback")
    assert d.reason == "premium-rate numbers may not be dialled"


def test_patterns() -> None:
    assert matches("+19005550123", ["+44", "+1900"]) == "+1900"
    assert matches("+19765550123", ["+1X76"]) == "+1X76"
    assert matches("+1900", ["+19005"]) is None


def test_config_is_checked(tmp_path: Any) -> None:
    for bad in ('countries = ["XX"]', 'types = ["EXPENSIVE"]', 'deny = ["1900"]',
                'deny = ["+19*"]', "agent_daily_limit = -1"):  # fmt: skip
        path = tmp_path / "cti.toml"
        path.write_text(f"[dial]\n{bad}\n")
        with pytest.raises(ConfigError, match="dial"):
            load_config(path)


async def test_do_not_call_list(db: Database) -> None:
    dnc = Dnc({"+8613800138000"})
    p = policy(db, services=Services(do_not_call=dnc))
    assert (await decide(p, "13800138000", campaign="spring"))[:2] == (False, "dnc")
    assert (await decide(p, "13900139000"))[:2] == (True, "")
    assert dnc.asked == [("+8613800138000", "spring"), ("+8613900139000", "")]
    broken = policy(db, services=Services(do_not_call=Dnc(set(), broken=True)))
    assert (await decide(broken, "13900139000"))[:2] == (False, "dnc")  # fails closed
    # a refused number costs the agent nothing
    await decide(p, "13800138000", agent="a1")
    assert await p.dials_today("a1") == 0


async def test_agent_daily_limit_counted_in_the_store(db: Database) -> None:
    now = [datetime(2026, 3, 1, 15, 59, tzinfo=UTC)]  # 23:59 in Shanghai
    p = policy(db, clock=lambda: now[0], agent_daily_limit=3, agent_limits={"boss": 0})
    results = [await decide(p, "13800138000", agent="a1") for _ in range(4)]
    assert [r[:2] for r in results] == [(True, "")] * 3 + [(False, "limit")]
    d = await p.check("13800138000", purpose="click_to_call", agent="a1")
    assert d.reason == "a1 reached the daily limit of 3 calls"
    assert (await decide(p, "13800138000", agent="a2"))[0]  # another agent
    assert (await decide(p, "13800138000"))[0]  # not an agent's dial: not limited
    assert all([(await decide(p, "13800138000", agent="boss"))[0] for _ in range(5)])
    now[0] += timedelta(minutes=2)  # a new day in the site's time zone
    assert (await decide(p, "13800138000", agent="a1"))[0]
    assert await p.dials_today("a1") == 1


async def test_the_limit_holds_under_concurrent_dials(db: Database) -> None:
    p = policy(db, agent_daily_limit=5)
    results = await asyncio.gather(*(decide(p, "13800138000", agent="racer") for _ in range(20)))
    assert sum(1 for allowed, _, _ in results if allowed) == 5
    assert await p.dials_today("racer") == 5
