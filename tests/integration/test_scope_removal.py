"""A removal never widens what a supervisor sees (decision 0036), on both stores.

Team north works queue sales with agent a101 (ann); boss supervises it with no queue list
of their own. Losing north — removed from its members, north deleted, their team list
emptied — leaves boss seeing no queue and no other agent (``queues`` ``[]``), not the
whole centre, audited; an admin's deliberate write (teams, queues, all queues) gives
access back. Before this rule boss came out unrestricted (``queues``/``agents`` None)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cti.accounts.audit import AuditFilter, AuditLog
from cti.accounts.service import Accounts
from cti.config import AuthConfig
from cti.principal import Principal
from cti.store.db import Database
from tests.local_http import FAST, PW

Removal = Callable[[Accounts, dict[str, Any]], Awaitable[None]]


async def _members_replaced(accounts: Accounts, boss: dict[str, Any]) -> None:
    await accounts.put_team("admin", "north", {"queues": ["sales"], "members": ["ann"]})


async def _team_deleted(accounts: Accounts, boss: dict[str, Any]) -> None:
    await accounts.delete_team("admin", "north")


async def _team_list_emptied(accounts: Accounts, boss: dict[str, Any]) -> None:
    # as the console sends it: the unchanged "queues": null beside the emptied teams
    await accounts.update_user("admin", boss["id"], {"teams": [], "queues": None})


REMOVALS = {
    "removed from the team's members": _members_replaced,
    "team deleted": _team_deleted,
    "team list emptied": _team_list_emptied,
}


async def centre(db: Database, role: str = "supervisor",
                 queues: list[str] | None = None) -> tuple[Accounts, dict[str, Any]]:  # fmt: skip
    accounts = Accounts(db, AuthConfig(**FAST), AuditLog(db))
    boss = await accounts.create_user("setup", {"login": "boss", "password": PW, "role": role,
                                                "queues": queues})  # fmt: skip
    for login, agent in (("ann", "a101"), ("bob", "a201")):
        await accounts.create_user("setup", {"login": login, "password": PW, "role": "agent",
                                             "agent": agent})  # fmt: skip
    await accounts.put_team("setup", "north", {"queues": ["sales"], "members": ["boss", "ann"]})
    await accounts.put_team("setup", "south", {"queues": ["support"], "members": ["bob"]})
    return accounts, boss


async def sees(accounts: Accounts) -> Principal:
    return (await accounts.sign_in("boss", PW)).principal


@pytest.mark.parametrize("removal", list(REMOVALS))
async def test_a_supervisor_losing_their_only_team_sees_nothing_not_everything(
    db: Database, removal: str
) -> None:
    accounts, boss = await centre(db)
    before = await sees(accounts)
    assert before.queues == frozenset({"sales"}) and before.agents == frozenset({"a101"})
    await REMOVALS[removal](accounts, boss)
    now = await sees(accounts)
    assert now.queues == frozenset() and now.agents == frozenset()  # not None: unrestricted
    assert not now.sees_queue("sales") and not now.sees_queue("support")
    assert not now.sees_agent("a101") and not now.sees_agent("a201")
    assert now.sees_agent(now.name)  # themselves, as ever
    assert (await accounts.get_user(boss["id"]))["queues"] == []
    (entry,) = await accounts.audit.query(AuditFilter(action="user.scope_emptied"))
    assert entry["actor"] == "admin" and entry["target_id"] == "boss"
    assert entry["before"]["queues"] is None and entry["before"]["teams"] == ["north"]
    assert entry["after"]["queues"] == [] and entry["after"]["teams"] == []
    assert "no queue" in entry["detail"]


async def test_an_admin_gives_access_back_only_by_granting_it(db: Database) -> None:
    accounts, boss = await centre(db)
    await _team_deleted(accounts, boss)
    await accounts.update_user("admin", boss["id"], {"teams": ["south"]})
    assert (await sees(accounts)).queues == frozenset({"support"})
    await accounts.update_user("admin", boss["id"], {"teams": []})
    assert (await sees(accounts)).queues == frozenset()  # [] stays [], whatever is removed
    await accounts.update_user("admin", boss["id"], {"queues": ["support"]})
    now = await sees(accounts)
    assert now.queues == frozenset({"support"}) and now.agents == frozenset()
    await accounts.update_user("admin", boss["id"], {"queues": None})  # "all queues"
    now = await sees(accounts)
    assert now.queues is None and now.agents is None
    assert (await accounts.get_user(boss["id"]))["queues"] is None


async def test_the_write_that_empties_the_team_list_may_grant_all_queues(db: Database) -> None:
    """Queues changed from a list to null in the same write is the admin's choice."""
    accounts, boss = await centre(db, queues=["billing"])
    await accounts.update_user("admin", boss["id"], {"teams": [], "queues": None})
    now = await sees(accounts)
    assert now.queues is None and now.agents is None
    assert not await accounts.audit.query(AuditFilter(action="user.scope_emptied"))


async def test_a_queue_list_of_their_own_is_kept_and_no_other_agent_appears(
    db: Database,
) -> None:
    accounts, boss = await centre(db, queues=["billing"])
    await _team_deleted(accounts, boss)
    now = await sees(accounts)
    # before the rule: queues billing but agents None, every agent of the centre
    assert now.queues == frozenset({"billing"}) and now.agents == frozenset()
    assert (await accounts.get_user(boss["id"]))["queues"] == ["billing"]
    assert not await accounts.audit.query(AuditFilter(action="user.scope_emptied"))


async def test_losing_one_of_two_teams_leaves_the_other(db: Database) -> None:
    accounts, boss = await centre(db)
    await accounts.put_team("setup", "south", {"queues": ["support"], "members": ["bob", "boss"]})
    await _team_deleted(accounts, boss)
    now = await sees(accounts)
    assert now.queues == frozenset({"support"}) and now.agents == frozenset({"a201"})
    assert (await accounts.get_user(boss["id"]))["queues"] is None  # nothing to narrow


@pytest.mark.parametrize("role", ["admin", "agent"])
async def test_admins_and_agents_are_left_as_they_are(db: Database, role: str) -> None:
    accounts, boss = await centre(db, role=role)
    await _team_deleted(accounts, boss)
    assert (await accounts.get_user(boss["id"]))["queues"] is None
    now = await sees(accounts)
    assert now.queues is None
    assert now.sees_agent("a201") is (role == "admin")  # an agent sees only themselves


async def test_a_supervisor_created_in_no_team_is_unrestricted_as_granted(db: Database) -> None:
    """Nothing was taken away: a new supervisor with no queue list sees everything, as
    the admin who created them so chose (the console says "all queues")."""
    accounts = Accounts(db, AuthConfig(**FAST), AuditLog(db))
    await accounts.create_user("setup", {"login": "boss", "password": PW, "role": "supervisor"})
    now = await sees(accounts)
    assert now.queues is None and now.agents is None
