"""Who sees what (roles, team scope) and which browser origins are the site's."""

from __future__ import annotations

from cti.principal import Principal, role_at_least
from cti.web.origins import OriginPolicy, normalise_origin


def test_roles_rank_agent_supervisor_admin() -> None:
    assert role_at_least("admin", "supervisor") and role_at_least("agent", "agent")
    assert not role_at_least("agent", "supervisor") and not role_at_least("root", "agent")


def test_scope_of_a_team_supervisor() -> None:
    sup = Principal(None, "sue", "supervisor", user_id=1, session_id=2, login="sue",
                    queues=frozenset({"support"}), agents=frozenset({"a101"}))  # fmt: skip
    assert sup.sees_queue("support") and not sup.sees_queue("sales")
    assert sup.sees_agent("a101") and not sup.sees_agent("a102")
    assert sup.credential == ("session", 2) and sup.actor == "sue"
    everyone = Principal(7, "ops", "supervisor")
    assert everyone.sees_queue("sales") and everyone.sees_agent("a102")
    assert everyone.credential == ("token", 7) and everyone.actor == "ops"
    agent = Principal(None, "a101", "agent", user_id=3, session_id=4, login="anna")
    assert agent.sees_agent("a101") and not agent.sees_agent("a102")
    assert agent.actor == "anna"  # the audit log names the person, not the agent


def test_origins_are_normalised() -> None:
    assert normalise_origin("HTTPS://CTI.Example.com:443/") == "https://cti.example.com"
    assert normalise_origin("http://[::1]:8080") == "http://[::1]:8080"
    for bad in ("null", "file://x", "javascript:alert(1)", "http://", "http://h:99999"):
        assert normalise_origin(bad) is None


def test_configured_public_urls_are_the_only_origins() -> None:
    policy = OriginPolicy.of(["https://cti.example.com"], ["https://crm.example.com"])
    assert policy.secure_only
    assert policy.public == {"https://cti.example.com"}
    assert policy.extra == {"https://crm.example.com"}
    assert not OriginPolicy.of(["http://cti.example.com"]).secure_only


def test_queue_events_reach_only_supervisors_who_see_the_queue() -> None:
    from cti.web.ws import to_role

    north = Principal(None, "sue", "supervisor", session_id=1, queues=frozenset({"support"}))
    everyone = Principal(1, "ops", "supervisor")
    agent = Principal(2, "a101", "agent")
    assert to_role("supervisor", queue="support").includes(north)
    assert not to_role("supervisor", queue="sales").includes(north)
    assert to_role("supervisor", queue="sales").includes(everyone)
    assert not to_role("supervisor", queue="sales").includes(agent)
    assert to_role("supervisor").includes(north)
