"""Accounts: ``credential_changes`` also moves with every write that can change what a
credential may see (docs/decisions/0015-accounts.md, "Closing websockets whose credential
ended"), so the websocket hub's full check runs and closes connections whose principal
changed.

What shapes a principal (``Accounts._principals``, ``cti.store.tokens._principal``):
- ``users``: an update of ``role``, ``agent``, ``queues`` or ``login`` (the name it acts
  as, its role, its own queue scope; and, through ``agent``, its team mates' scope);
- ``user_teams``: any insert, update or delete (who is in which team: the member's scope
  and every team mate's agents);
- ``teams``: an update of ``queues``, a delete (its members' scope);
- ``api_tokens``: an update of ``role``, ``name`` or ``queues``.
Not: inserting a user or a team (nobody's scope changes until a membership row is
written), ``display_name``, passwords, second factor, ``updated_at``.

Same shapes as auth_0002: PostgreSQL one statement-level trigger per table (also on
TRUNCATE where deletes count), SQLite row-level, one per table and event. A later SQLite
rebuild of one of these tables (``batch_alter_table``) drops its triggers: it must create
them again (tests/integration/test_ws_credential_sweep.py fails otherwise).

Revision ID: auth_0003
Revises: auth_0002
Create Date: 2026-11-30 20:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "auth_0003"
down_revision: str | Sequence[str] | None = "auth_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARK = "credential_changes"
_BUMP = f"UPDATE {MARK} SET n = n + 1 WHERE id = 1"
#: table -> (the columns whose update changes a principal, or () for any update;
#: whether inserts count; whether deletes count)
_WATCHED: dict[str, tuple[tuple[str, ...], bool, bool]] = {
    "users": (("role", "agent", "queues", "login"), False, False),  # deletes: auth_0002
    "user_teams": ((), True, True),
    "teams": (("queues",), False, True),
    "api_tokens": (("role", "name", "queues"), False, False),  # deletes: auth_0002
}


def _update(columns: tuple[str, ...]) -> str:
    return f"UPDATE OF {', '.join(columns)}" if columns else "UPDATE"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # the function credential_changes_bump() comes from auth_0002
        for table, (columns, inserts, deletes) in _WATCHED.items():
            events = [_update(columns)]
            if inserts:
                events.append("INSERT")
            if deletes:
                events += ["DELETE", "TRUNCATE"]
            op.execute(
                f"CREATE TRIGGER {MARK}_access_{table} AFTER {' OR '.join(events)} ON {table}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {MARK}_bump()"
            )
        return
    for table, (columns, inserts, deletes) in _WATCHED.items():
        by_suffix = {"u": _update(columns)}
        if inserts:
            by_suffix["i"] = "INSERT"
        if deletes:
            by_suffix["d"] = "DELETE"
        for suffix, event in by_suffix.items():
            op.execute(
                f"CREATE TRIGGER {MARK}_access_{table}_{suffix} AFTER {event} ON {table}"
                f" BEGIN {_BUMP}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS {MARK}_access_{table} ON {table}")
        return
    for table in _WATCHED:
        for suffix in ("u", "i", "d"):
            op.execute(f"DROP TRIGGER IF EXISTS {MARK}_access_{table}_{suffix}")
