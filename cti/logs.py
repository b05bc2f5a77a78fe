"""Structured logging: one JSON object per line (or readable text), secrets never logged.

Written off the event loop (issue #19): a record is formatted and written to stderr on a
thread of its own (:class:`logging.handlers.QueueListener`), so the loop that makes the
pops never waits on the write, whatever stderr is (a pipe to journald that is full, a
log file on a busy disk). In a burst of 200 calls, writing log lines (one "call
completed" a call, mostly) was 2.3 % of the main thread's samples, two thirds of it in
the write itself (py-spy, on a machine busy with other work). Guarantees:

- the logging call on the loop only takes the record's message with its arguments
  applied (and an exception's traceback as text) and queues it: what is logged is what
  was true at the call, in the order of the calls;
- the queue is bounded (:data:`QUEUE_MAX` records): when the writer cannot keep up,
  records are dropped rather than memory taken, and the next record written says how
  many were dropped;
- :meth:`Logging.stop` writes what is queued before it returns (``cti run`` calls it
  last, after the daemon has stopped).
"""

from __future__ import annotations

import json
import logging
import queue
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import TextIO

__all__ = ["QUEUE_MAX", "JsonFormatter", "Logging", "TextFormatter", "setup_logging"]

#: records waiting for the writer thread at most
QUEUE_MAX = 10_000

_STD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Readable lines with the structured fields appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [
            f"{k}={v!r}" if isinstance(v, str) and (" " in v or not v) else f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STD and not k.startswith("_")
        ]
        return line + (" " + " ".join(extra) if extra else "")


class _Offload(QueueHandler):
    """Queues a record for the writer thread: its message taken now, never waits."""

    def __init__(self, q: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(q)
        self.dropped = 0  # since the last record queued (emit runs under the handler's lock)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        out = logging.makeLogRecord(record.__dict__)
        out.msg, out.args = record.getMessage(), None
        if record.exc_info:
            out.exc_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            out.exc_info = None
        return out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            out = self.prepare(record)
            if self.dropped:
                out.log_records_dropped = self.dropped
            self.queue.put_nowait(out)
            self.dropped = 0
        except queue.Full:
            self.dropped += 1
        except Exception:
            self.handleError(record)


class _Writer(QueueListener):
    def enqueue_sentinel(self) -> None:
        self.queue.put(self._sentinel)  # type: ignore[attr-defined]  # a full queue: after the rest


class Logging:
    """The daemon's logging: records queued on the caller's thread, written by one thread."""

    def __init__(self, handler: logging.Handler) -> None:
        q: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_MAX)
        self.handler = _Offload(q)
        self._listener = _Writer(q, handler)
        self._listener.start()
        self._running = True

    def stop(self) -> None:
        """Write what is queued, then end the writer thread (idempotent)."""
        if self._running:
            self._running = False
            self._listener.stop()


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> Logging:
    """Route every record to ``stream`` (stderr) in ``fmt`` ("json" or "text"), written
    off the caller's thread; the caller stops the returned :class:`Logging` last."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    writer = Logging(handler)
    root = logging.getLogger()
    root.handlers[:] = [writer.handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return writer
