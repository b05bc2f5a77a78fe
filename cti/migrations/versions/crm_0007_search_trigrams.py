"""PostgreSQL: the customers holding each trigram, in customer order (B-tree), so a page of
search results is read newest first and stops when full (docs/decisions/0011-crm-search.md).

- ``crm_search_trigrams (gram, customer_id)``, primary key in that order: one row per
  distinct trigram of each entry of a ``crm_search`` row, spelled with the entry's kind
  (``n`` names, ``p`` phones, ``e`` emails) in front: ``+8613812345678`` gives ``p+86``,
  ``p861``, ... A trigram never spans two entries, as a ``LIKE`` match never does.
- ``crm_search_trigrams_of(names, phones, emails)``: those trigrams (SQL, immutable).
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

from collections.abc import Sequence

from alembic import op

revision: str = "crm_0007"
down_revision: str | Sequence[str] | None = "crm_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "crm_search_trigrams"

_OF = f"""
CREATE FUNCTION {TABLE}_of(names text, phones text, emails text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT DISTINCT c.kind || substr(e.entry, i, 3)
  FROM (VALUES ('n', names), ('p', phones), ('e', emails)) AS c (kind, body),
       unnest(string_to_array(c.body, E'\\n')) AS e (entry),
       generate_series(1, length(e.entry) - 2) AS i
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


def upgrade() -> None:
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
