"""Recording metadata and the audit trail (tables ``recordings`` and ``recording_audit``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Index, Integer, text
from sqlalchemy.orm import Mapped, mapped_column

from cti.store.models import Base, BoundedText, UTCDateTime, utcnow

__all__ = ["STATUSES", "QueuePolicyRow", "Recording", "RecordingAudit", "RecordingNode"]

_BigId = BigInteger().with_variant(Integer(), "sqlite")

# recording: MixMonitor running | processing: call over, file being verified/transcoded
# ready: playable | empty: no audio (file removed) | missing: the file is gone
# not_recorded: answered but not recorded (reason says why) | deleted: retention/admin
# failed: MixMonitor refused to start (reason says why)
STATUSES = (
    "recording", "processing", "ready", "empty", "missing", "not_recorded", "deleted", "failed",
)  # fmt: skip


#: one row per recording file (migration recordings_0005, decision 0033): a path names
#: the file MixMonitor wrote on its server's spool (Linkedid, which carries the server's
#: systemname, start second and segment), whichever node's root holds it now; rows with
#: no file have path ""
_ONE_ROW_PER_FILE = text("path <> ''")


class Recording(Base):
    """One recording segment of one call (a call recorded on demand twice has two)."""

    __tablename__ = "recordings"
    __table_args__ = (
        Index(
            "uq_recordings_path", "path", unique=True,
            sqlite_where=_ONE_ROW_PER_FILE, postgresql_where=_ONE_ROW_PER_FILE,
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), index=True)
    uniqueid: Mapped[str] = mapped_column(BoundedText(64), default="")
    channel: Mapped[str] = mapped_column(BoundedText(128), default="")
    agent: Mapped[str] = mapped_column(BoundedText(128), default="", index=True)
    queue: Mapped[str] = mapped_column(BoundedText(128), default="", index=True)
    caller_num: Mapped[str] = mapped_column(BoundedText(64), default="", index=True)
    customer_id: Mapped[int | None] = mapped_column(_BigId, index=True)
    customer_name: Mapped[str] = mapped_column(BoundedText(256), default="")
    mode: Mapped[str] = mapped_column(BoundedText(16), default="always")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_s: Mapped[float | None] = mapped_column(Float())
    paused_s: Mapped[float] = mapped_column(Float(), default=0.0)
    size_bytes: Mapped[int | None] = mapped_column(_BigId)
    format: Mapped[str] = mapped_column(BoundedText(8), default="wav")
    path: Mapped[str] = mapped_column(BoundedText(200), default="")
    checksum: Mapped[str] = mapped_column(BoundedText(64), default="")  # SHA-256, hex
    status: Mapped[str] = mapped_column(BoundedText(16), default="recording", index=True)
    reason: Mapped[str] = mapped_column(BoundedText(256), default="")
    # set while one process verifies/transcodes the file (RecordingStore.claim): the one
    # place that decides who processes a recording
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the cluster node whose root holds the file ("": a single node, or every node sees it)
    node: Mapped[str] = mapped_column(BoundedText(64), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"Recording(id={self.id!r}, linkedid={self.linkedid!r}, status={self.status!r})"


class RecordingAudit(Base):
    """Who listened to, downloaded, started/stopped/paused or live-monitored what, when."""

    __tablename__ = "recording_audit"

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(BoundedText(128), index=True)
    role: Mapped[str] = mapped_column(BoundedText(16))
    action: Mapped[str] = mapped_column(BoundedText(16))
    recording_id: Mapped[int | None] = mapped_column(_BigId, index=True)
    linkedid: Mapped[str] = mapped_column(BoundedText(64), default="")
    detail: Mapped[str] = mapped_column(BoundedText(256), default="")

    def __repr__(self) -> str:
        return f"RecordingAudit(id={self.id!r}, actor={self.actor!r}, action={self.action!r})"


class QueuePolicyRow(Base):
    """A queue's recording policy and retention set in the console; wins over the
    ``[recordings.queues.<queue>]`` config table (None: that field is not overridden)."""

    __tablename__ = "recording_queue_policies"

    queue: Mapped[str] = mapped_column(BoundedText(64), primary_key=True)
    policy: Mapped[str | None] = mapped_column(BoundedText(16))
    retention_days: Mapped[int | None] = mapped_column(Integer())
    updated_by: Mapped[str] = mapped_column(BoundedText(128), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class RecordingNode(Base):
    """How the other nodes reach a node's HTTP (``[cluster] http_url``, written by the node
    at start): a recording held in that node's root is fetched from it (recordings.peers)."""

    __tablename__ = "recording_nodes"

    node: Mapped[str] = mapped_column(BoundedText(64), primary_key=True)
    url: Mapped[str] = mapped_column(BoundedText(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
