"""Needles with 5+ digits found through 5-digit windows; PostgreSQL: the customers holding
each trigram, in customer order (B-tree), so a page of search results is read newest
first and stops when full (docs/decisions/0011-crm-search.md).

- ``crm_search.grams`` (crm_0006) gains a word per window of 5 ASCII digits of every
  entry (``p13800``): a digit trigram is in ~2.5% of the rows, a 5-digit window in
  ~0.02%. Rewritten here for existing rows (a frozen copy of
  ``crm_bridge.keys.search_grams``, 5,000 rows a batch); SQLite's FTS5 word index
  follows through its update trigger.
- PostgreSQL: ``crm_search_trigrams (gram, customer_id)``, primary key in that order: one
  row per distinct trigram and 5-digit window of each entry of a ``crm_search`` row,
  spelled with the entry's kind (``n`` names, ``p`` phones, ``e`` emails) in front:
  ``+8613812345678`` gives ``p+86``, ``p861``, ..., ``p86138``, ... A gram never spans
  two entries, as a ``LIKE`` match never does.
- ``crm_search_trigrams_of(names, phones, emails)``: those grams (SQL, immutable).
- Kept by a trigger on ``crm_search`` (insert, delete, update of its three columns), so
  the table changes in the same transaction as every write to ``crm_search``, whoever
  writes (the store's ``reindex()``, a cascade delete, a restore): as SQLite's FTS5
  triggers keep ``crm_search_fts``. Filled here for existing rows with one
  ``INSERT … SELECT``.
- SQLite: nothing (its FTS5 indexes of crm_0005/crm_0006 already read pages in order).

Revision ID: crm_0007
Revises: crm_0006
Create Date: 2026-11-29 18:40:00
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "crm_0007"
down_revision: str | Sequence[str] | None = "crm_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "crm_search_trigrams"

_OF = f"""
CREATE FUNCTION {TABLE}_of(names text, phones text, emails text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT c.kind || substr(e.entry, i, 3)
  FROM (VALUES ('n', names), ('p', phones), ('e', emails)) AS c (kind, body),
       unnest(string_to_array(c.body, E'\\n')) AS e (entry),
       generate_series(1, length(e.entry) - 2) AS i
  UNION
  SELECT c.kind || substr(e.entry, i, 5)
  FROM (VALUES ('n', names), ('p', phones), ('e', emails)) AS c (kind, body),
       unnest(string_to_array(c.body, E'\\n')) AS e (entry),
       generate_series(1, length(e.entry) - 4) AS i
  WHERE substr(e.entry, i, 5) ~ '^[0-9]{{5}}$'
$$
"""

# the old row's trigrams are deleted by primary key (no index on customer_id alone)
_SYNC = f"""
CREATE FUNCTION {TABLE}_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    DELETE FROM {TABLE}
    WHERE customer_id = OLD.customer_id
      AND gram = ANY (ARRAY(SELECT {TABLE}_of(OLD.names, OLD.phones, OLD.emails)));
  END IF;
  IF TG_OP IN ('UPDATE', 'INSERT') THEN
    INSERT INTO {TABLE} (gram, customer_id)
    SELECT g, NEW.customer_id FROM {TABLE}_of(NEW.names, NEW.phones, NEW.emails) AS g;
  END IF;
  RETURN NULL;
END
$$
"""

#: the trigger statements (the bench drops and recreates them around its bulk load)
TRIGGERS = (
    f"CREATE TRIGGER {TABLE}_ai AFTER INSERT ON crm_search"
    f" FOR EACH ROW EXECUTE FUNCTION {TABLE}_sync()",
    f"CREATE TRIGGER {TABLE}_ad AFTER DELETE ON crm_search"
    f" FOR EACH ROW EXECUTE FUNCTION {TABLE}_sync()",
    f"CREATE TRIGGER {TABLE}_au AFTER UPDATE OF names, phones, emails ON crm_search"
    " FOR EACH ROW WHEN (OLD.names IS DISTINCT FROM NEW.names"
    " OR OLD.phones IS DISTINCT FROM NEW.phones OR OLD.emails IS DISTINCT FROM NEW.emails)"
    f" EXECUTE FUNCTION {TABLE}_sync()",
)

#: fills the table from every crm_search row (the migration, the bench's load)
FILL = (
    f"INSERT INTO {TABLE} (gram, customer_id)"
    f" SELECT g, s.customer_id FROM crm_search AS s,"
    f" LATERAL {TABLE}_of(s.names, s.phones, s.emails) AS g"
)


# A frozen copy of crm_bridge.keys.search_grams as of this revision: a migration never
# imports a feature (the platform owns the schema) and must not change when that does.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_PLAIN = frozenset(string.ascii_lowercase + string.digits)
_BATCH = 5000


def _token(kind: str, gram: str) -> str:
    return kind + "".join(
        c if c in _PLAIN else f"_{ord(c):x}_" for c in gram.translate(_ASCII_LOWER)
    )


def _digit_runs(text: str, n: int = 5) -> set[str]:
    return {
        text[i : i + n]
        for i in range(len(text) - n + 1)
        if text[i : i + n].isascii() and text[i : i + n].isdigit()
    }


def search_grams(names: str, phones: str, emails: str) -> str:
    words: set[str] = set()
    for kind, text in (("n", names), ("p", phones), ("e", emails)):
        pieces: set[str] = set()
        runs: set[str] = set()
        for entry in text.split("\n"):
            entry = entry.translate(_ASCII_LOWER)
            pieces.update(entry)
            pieces.update(entry[i : i + 2] for i in range(len(entry) - 1))
            runs.update(_digit_runs(entry))
        if kind == "e":
            pieces = {p for p in pieces if "@" in p or "." in p}
        words.update(_token(kind, p) for p in pieces | runs)
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
    _fill_grams()
    if op.get_bind().dialect.name != "postgresql":
        return
    # COLLATE "C": byte order, and the same on every server whatever its locale
    op.execute(
        f'CREATE TABLE {TABLE} (gram text COLLATE "C" NOT NULL, customer_id integer NOT NULL)'
    )
    op.execute(_OF)
    op.execute(_SYNC)
    op.execute(FILL)
    op.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT pk_{TABLE} PRIMARY KEY (gram, customer_id)")
    for trigger in TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for suffix in ("ai", "ad", "au"):
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_{suffix} ON crm_search")
    op.execute(f"DROP TABLE IF EXISTS {TABLE}")
    op.execute(f"DROP FUNCTION IF EXISTS {TABLE}_sync()")
    op.execute(f"DROP FUNCTION IF EXISTS {TABLE}_of(text, text, text)")
