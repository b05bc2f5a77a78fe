"""Records: the tables Asterisk itself writes its queue_log and CDR into (PostgreSQL only).

``asterisk_queue_log`` is what Asterisk's realtime queue_log writes (extconfig.conf
``queue_log => pgsql,…``; with ``data1``…``data5`` present, logger.c's adaptive mode
splits the event data over them, else it writes ``data``), ``asterisk_cdr`` what
``cdr_pgsql`` writes (it fills every column named like a CDR field or variable: the
Linkedid, the DNIS in ``userfield``, the dialplan's ``cti_outcome``). Several servers
share them: ``server`` defaults to the connection's ``application_name``, which the
generated res_pgsql.conf / cdr_pgsql.conf set to the server's name (neither module
knows such a column: they leave it to the default). ``id`` orders each server's rows as
they were written (one connection per module and server), the cursor of the readers
(cti.records). SQLite (the single box) keeps reading Asterisk's files: nothing here.

Revision ID: records_0001
Revises: 0001
Create Date: 2026-11-29 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "records_0001"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("records",)
depends_on: str | Sequence[str] | None = None

SERVER_DEFAULT = sa.text("current_setting('application_name')")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_table(
        "asterisk_queue_log",
        # a serial (a column default): cdr_pgsql fills a NOT NULL column without one with ''
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("server", sa.Text(), nullable=False, server_default=SERVER_DEFAULT),
        sa.Column("time", sa.DateTime(timezone=False), nullable=False),
        sa.Column("callid", sa.Text(), nullable=False, server_default=""),
        sa.Column("queuename", sa.Text(), nullable=False, server_default=""),
        sa.Column("agent", sa.Text(), nullable=False, server_default=""),
        sa.Column("event", sa.Text(), nullable=False, server_default=""),
        sa.Column("data1", sa.Text(), nullable=False, server_default=""),
        sa.Column("data2", sa.Text(), nullable=False, server_default=""),
        sa.Column("data3", sa.Text(), nullable=False, server_default=""),
        sa.Column("data4", sa.Text(), nullable=False, server_default=""),
        sa.Column("data5", sa.Text(), nullable=False, server_default=""),
        sa.Column("data", sa.Text(), nullable=True),
    )
    op.create_index("ix_asterisk_queue_log_server_id", "asterisk_queue_log", ["server", "id"])
    op.create_index("ix_asterisk_queue_log_server_time", "asterisk_queue_log", ["server", "time"])
    op.create_table(
        "asterisk_cdr",
        # a serial (a column default): cdr_pgsql fills a NOT NULL column without one with ''
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("server", sa.Text(), nullable=False, server_default=SERVER_DEFAULT),
        sa.Column("linkedid", sa.Text(), nullable=False, server_default=""),
        sa.Column("uniqueid", sa.Text(), nullable=False, server_default=""),
        sa.Column("sequence", sa.Integer(), nullable=True),
        # epoch seconds with microseconds (cdr_pgsql writes float columns so)
        sa.Column("start", sa.Float(), nullable=True),
        sa.Column("answer", sa.Float(), nullable=True),
        sa.Column("end", sa.Float(), nullable=True),
        sa.Column("src", sa.Text(), nullable=False, server_default=""),
        sa.Column("dst", sa.Text(), nullable=False, server_default=""),
        sa.Column("dcontext", sa.Text(), nullable=False, server_default=""),
        sa.Column("clid", sa.Text(), nullable=False, server_default=""),
        sa.Column("channel", sa.Text(), nullable=False, server_default=""),
        sa.Column("dstchannel", sa.Text(), nullable=False, server_default=""),
        sa.Column("lastapp", sa.Text(), nullable=False, server_default=""),
        sa.Column("lastdata", sa.Text(), nullable=False, server_default=""),
        sa.Column("disposition", sa.Text(), nullable=False, server_default=""),
        sa.Column("duration", sa.Integer(), nullable=True),
        sa.Column("billsec", sa.Integer(), nullable=True),
        sa.Column("userfield", sa.Text(), nullable=False, server_default=""),
        sa.Column("cti_outcome", sa.Text(), nullable=False, server_default=""),
    )
    op.create_index("ix_asterisk_cdr_server_id", "asterisk_cdr", ["server", "id"])
    op.create_index("ix_asterisk_cdr_server_end", "asterisk_cdr", ["server", "end"])


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_table("asterisk_cdr")
    op.drop_table("asterisk_queue_log")
