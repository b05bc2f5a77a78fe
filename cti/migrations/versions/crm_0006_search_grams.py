"""CRM search for needles of 1-2 characters (no trigram) and the customer page's timeline
(docs/decisions/0011-crm-search.md).

- ``crm_search.grams``: every 1-2 character piece of the row's name keys and numbers (and
  the ``@``/``.`` pieces of its addresses) as words (``crm_bridge.keys.search_grams``, of
  which a frozen copy below fills the existing rows); the store's ``reindex()`` writes it
  with the other columns.
- SQLite: FTS5 word index ``crm_search_fts_grams`` over it (external content, no copy of
  the text, ``detail=none``), kept by triggers on ``crm_search`` like ``crm_search_fts``
  (crm_0005), whose update trigger now fires only when its own columns change.
- PostgreSQL: a GIN index over ``string_to_array(grams, ' ')`` (``@>`` finds the rows
  holding a word). Not in the models (SQLite has no arrays); its name ends in ``_trgm``,
  the suffix of the optional server-side search indexes (cti.store.migrate).
- ``crm_interactions (customer_id, started_at, id)``: a customer's timeline, newest first,
  read from the index alone whatever the table's size.

Revision ID: crm_0006
Revises: crm_0005
Create Date: 2026-11-29 11:30:00
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_0006"
down_revision: str | Sequence[str] | None = "crm_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GRAMS = "crm_search_fts_grams"
PG_INDEX = "ix_crm_search_grams_trgm"
TIMELINE = "ix_crm_interactions_customer_started"
_BATCH = 5000

_TRI_COLS = "names, phones, emails"
_TRI_INS = (
    f"INSERT INTO crm_search_fts (rowid, {_TRI_COLS})"
    " VALUES (new.customer_id, new.names, new.phones, new.emails);"
)
_TRI_DEL = (
    f"INSERT INTO crm_search_fts (crm_search_fts, rowid, {_TRI_COLS})"
    " VALUES ('delete', old.customer_id, old.names, old.phones, old.emails);"
)
_INS = f"INSERT INTO {GRAMS} (rowid, grams) VALUES (new.customer_id, new.grams);"
_DEL = f"INSERT INTO {GRAMS} ({GRAMS}, rowid, grams) VALUES ('delete', old.customer_id, old.grams);"


# A frozen copy of crm_bridge.keys.search_grams as of this revision: a migration never
# imports a feature (the platform owns the schema) and must not change when that does.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_PLAIN = frozenset(string.ascii_lowercase + string.digits)


def _token(kind: str, gram: str) -> str:
    return kind + "".join(
        c if c in _PLAIN else f"_{ord(c):x}_" for c in gram.translate(_ASCII_LOWER)
    )


def search_grams(names: str, phones: str, emails: str) -> str:
    words: set[str] = set()
    for kind, text in (("n", names), ("p", phones), ("e", emails)):
        for entry in text.split("\n"):
            entry = entry.translate(_ASCII_LOWER)
            for i in range(len(entry)):
                for piece in (entry[i], entry[i : i + 2]):
                    if kind != "e" or "@" in piece or "." in piece:
                        words.add(_token(kind, piece))
    return " ".join(sorted(words))


def _fill_grams() -> None:
    bind = op.get_bind()
    search = sa.table(
        "crm_search",
        sa.column("customer_id"),
        sa.column("names"),
        sa.column("phones"),
        sa.column("emails"),
        sa.column("grams"),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(search.c.customer_id, search.c.names, search.c.phones, search.c.emails)
            .where(search.c.customer_id > last)
            .order_by(search.c.customer_id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        bind.execute(
            search.update()
            .where(search.c.customer_id == sa.bindparam("cid"))
            .values(grams=sa.bindparam("g")),
            [{"cid": row[0], "g": search_grams(*row[1:])} for row in rows],
        )
        last = rows[-1][0]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("crm_search", sa.Column("grams", sa.Text(), nullable=False, server_default=""))
    op.create_index(TIMELINE, "crm_interactions", ["customer_id", "started_at", "id"])
    if dialect == "sqlite":
        # the trigram index's update trigger only for its own columns (not for grams)
        op.execute("DROP TRIGGER IF EXISTS crm_search_fts_au")
        op.execute(
            "CREATE TRIGGER crm_search_fts_au AFTER UPDATE OF names, phones, emails"
            f" ON crm_search BEGIN {_TRI_DEL} {_TRI_INS} END"
        )
    _fill_grams()
    if dialect == "sqlite":
        op.execute(
            f"CREATE VIRTUAL TABLE {GRAMS} USING fts5(grams, content='crm_search',"
            " content_rowid='customer_id', detail=none,"
            " tokenize=\"unicode61 remove_diacritics 0 tokenchars '_'\")"
        )
        op.execute(f"CREATE TRIGGER {GRAMS}_ai AFTER INSERT ON crm_search BEGIN {_INS} END")
        op.execute(f"CREATE TRIGGER {GRAMS}_ad AFTER DELETE ON crm_search BEGIN {_DEL} END")
        op.execute(
            f"CREATE TRIGGER {GRAMS}_au AFTER UPDATE OF grams ON crm_search BEGIN {_DEL} {_INS} END"
        )
        op.execute(f"INSERT INTO {GRAMS} ({GRAMS}) VALUES ('rebuild')")
    elif dialect == "postgresql":
        op.execute(f"CREATE INDEX {PG_INDEX} ON crm_search USING gin (string_to_array(grams, ' '))")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("ai", "ad", "au"):
            op.execute(f"DROP TRIGGER IF EXISTS {GRAMS}_{trigger}")
        op.execute(f"DROP TABLE IF EXISTS {GRAMS}")
        op.execute("DROP TRIGGER IF EXISTS crm_search_fts_au")
        op.execute(
            f"CREATE TRIGGER crm_search_fts_au AFTER UPDATE ON crm_search"
            f" BEGIN {_TRI_DEL} {_TRI_INS} END"
        )
    elif dialect == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {PG_INDEX}")
    op.drop_index(TIMELINE, "crm_interactions")
    op.drop_column("crm_search", "grams")
