"""The one queue worker (cti.worker): bounded intake that never blocks, batches in order,
retry with backoff, a bad item isolated, flush on stop, counts in /metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from cti.worker import QueueWorker, WorkerMetrics


class Down(Exception):
    """A dependency that is away (retrying helps)."""


class Bad(Exception):
    """An item the dependency refuses (retrying cannot help)."""


class Sink:
    def __init__(self, *, down_for: int = 0, bad: frozenset[int] = frozenset()) -> None:
        self.down_for = down_for
        self.bad = bad
        self.batches: list[list[int]] = []
        self.calls = 0

    async def __call__(self, batch: Sequence[int]) -> None:
        self.calls += 1
        if self.calls <= self.down_for:
            raise Down("connection refused")
        if self.bad & set(batch):
            raise Bad(f"refused {sorted(self.bad & set(batch))}")
        self.batches.append(list(batch))

    @property
    def items(self) -> list[int]:
        return [i for b in self.batches for i in b]


def worker(sink: Sink, **kw: object) -> QueueWorker[int]:
    return QueueWorker(
        "test", sink, retry_base_s=0.001, retry_max_s=0.004,
        permanent=lambda e: isinstance(e, Bad), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_submit_never_waits_and_a_full_queue_drops_and_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    sink = Sink()
    w = worker(sink, queue_size=3, metrics=WorkerMetrics(registry))
    with caplog.at_level(logging.ERROR, logger="cti.worker"):
        accepted = [w.submit(i) for i in range(5)]  # not started: nothing drains
    assert accepted == [True, True, True, False, False]
    assert (w.enqueued, w.dropped, w.pending) == (3, 2, 3)
    assert "queue full" in caplog.text
    text = generate_latest(registry).decode()
    assert 'cti_queue_worker_dropped_total{worker="test"} 2.0' in text
    assert 'cti_queue_worker_pending{worker="test"} 3.0' in text
    w.start()
    await w.flush()
    assert sink.items == [0, 1, 2] and w.handled == 3
    await w.close()


async def test_batches_keep_submission_order() -> None:
    sink = Sink()
    w = worker(sink, batch_size=4)
    for i in range(10):
        w.submit(i)
    w.start()
    await w.close()
    assert sink.items == list(range(10))
    assert [len(b) for b in sink.batches] == [4, 4, 2]


async def test_an_outage_is_retried_until_the_dependency_is_back() -> None:
    sink = Sink(down_for=5)
    w = worker(sink, batch_size=10)
    w.start()
    for i in range(3):
        w.submit(i)
    async with asyncio.timeout(5):
        await w.flush()
    assert sink.items == [0, 1, 2]
    assert (w.errors, w.failed, w.handled) == (5, 0, 3)
    await w.close()


async def test_a_bad_item_is_isolated_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    sink = Sink(bad=frozenset({3}))
    w = worker(sink, batch_size=10, permanent_attempts=2)
    for i in range(6):
        w.submit(i)
    with caplog.at_level(logging.ERROR, logger="cti.worker"):
        w.start()
        await w.close()
    assert sink.items == [0, 1, 2, 4, 5]  # the ones around it are handled, in order
    assert (w.failed, w.handled) == (1, 6)
    assert "given up after 2 attempt(s)" in caplog.text and "Bad: refused [3]" in caplog.text


async def test_close_flushes_then_refuses_and_names_what_it_could_not_handle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink(down_for=10**6)  # never comes back
    w = worker(sink)
    w.start()
    w.submit(7)
    w.submit(8)
    with caplog.at_level(logging.ERROR, logger="cti.worker"):
        async with asyncio.timeout(5):
            await w.close(grace_s=0.1)
    assert "2 item(s) unhandled" in caplog.text and "7, 8" in caplog.text
    assert w.submit(9) is False and w.dropped == 1
    with pytest.raises(RuntimeError, match="unhandled"):
        await w.flush()
    await w.close()  # idempotent


async def test_concurrent_workers_do_not_wait_for_a_slow_item() -> None:
    gate = asyncio.Event()
    three = asyncio.Event()
    done: list[int] = []

    async def handler(batch: Sequence[int]) -> None:
        if batch[0] == 0:
            await gate.wait()  # a receiver that hangs
        done.append(batch[0])
        if len(done) == 3:
            three.set()

    w: QueueWorker[int] = QueueWorker("slow", handler, concurrency=2)
    w.start()
    for i in range(4):
        w.submit(i)
    async with asyncio.timeout(5):
        await three.wait()
    assert done == [1, 2, 3]
    gate.set()
    await w.close()
    assert sorted(done) == [0, 1, 2, 3]
