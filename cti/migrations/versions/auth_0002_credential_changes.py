"""Accounts: ``credential_changes``, one counter that every write able to end a credential
moves (docs/decisions/0015-accounts.md, "Closing websockets whose credential ended").

- ``credential_changes (id = 1, n)``: one row, ``n`` starting at 0.
- Kept by triggers, so it moves in the same transaction as the write, whoever writes (the
  daemon, the CLI, another node of a cluster, a restore, an operator's SQL):
  ``api_tokens`` and ``web_sessions``: an update of ``revoked_at`` or ``expires_at``, a
  delete; ``users``: an update of ``disabled_at``, a delete; a session's ``last_seen_at``
  set back (it may have idled out so). Not ``last_seen_at`` moving forward or
  ``last_used_at`` (touched on use), nor inserts (a new credential ends nothing).
- PostgreSQL: one statement-level trigger per table (a sign-out-everywhere of 100
  sessions moves it once), also on TRUNCATE, and a row-level one for ``last_seen_at`` set
  back (a statement-level trigger cannot compare old and new). SQLite has row-level
  triggers only: one per table and event.
- A later migration that rebuilds one of these tables on SQLite (``batch_alter_table``
  copies it into a new table) drops its triggers with it: it must create them again
  (tests/integration/test_ws_credential_sweep.py fails otherwise).

Revision ID: auth_0002
Revises: auth_0001
Create Date: 2026-11-30 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "auth_0002"
down_revision: str | Sequence[str] | None = "auth_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "credential_changes"
_BUMP = f"UPDATE {TABLE} SET n = n + 1 WHERE id = 1"
#: table -> the columns whose update may end a credential
_WATCHED = {
    "api_tokens": ("revoked_at", "expires_at"),
    "web_sessions": ("revoked_at", "expires_at"),
    "users": ("disabled_at",),
}

#: a session's last use set back: it may have idled out
_BACK = "NEW.last_seen_at < OLD.last_seen_at"

_PG_FUNCTION = f"""
CREATE FUNCTION {TABLE}_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  {_BUMP};
  RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{TABLE}")),
    )
    op.execute(f"INSERT INTO {TABLE} (id, n) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for table, columns in _WATCHED.items():
            op.execute(
                f"CREATE TRIGGER {TABLE}_{table} AFTER DELETE OR TRUNCATE OR UPDATE OF"
                f" {', '.join(columns)} ON {table} FOR EACH STATEMENT"
                f" EXECUTE FUNCTION {TABLE}_bump()"
            )
        op.execute(
            f"CREATE TRIGGER {TABLE}_idle AFTER UPDATE OF last_seen_at ON web_sessions"
            f" FOR EACH ROW WHEN ({_BACK}) EXECUTE FUNCTION {TABLE}_bump()"
        )
        return
    for table, columns in _WATCHED.items():
        op.execute(
            f"CREATE TRIGGER {TABLE}_{table}_u AFTER UPDATE OF {', '.join(columns)}"
            f" ON {table} BEGIN {_BUMP}; END"
        )
        op.execute(f"CREATE TRIGGER {TABLE}_{table}_d AFTER DELETE ON {table} BEGIN {_BUMP}; END")
    op.execute(
        f"CREATE TRIGGER {TABLE}_idle AFTER UPDATE OF last_seen_at ON web_sessions"
        f" WHEN {_BACK} BEGIN {_BUMP}; END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_{table} ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_idle ON web_sessions")
        op.execute(f"DROP FUNCTION IF EXISTS {TABLE}_bump()")
    else:
        for table in _WATCHED:
            for suffix in ("u", "d"):
                op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_{table}_{suffix}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_idle")
    op.drop_table(TABLE)
