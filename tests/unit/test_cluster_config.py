"""[cluster]: empty is one node on the in-process bus (make up); a broker URL makes the bus
cross nodes; names and URLs are checked at start."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from cti.bus import EventBus
from cti.cluster.natsbus import NatsBus
from cti.config import ConfigError, load_config
from cti.daemon import make_bus, make_lease


def test_no_cluster_section_is_one_node_on_the_in_process_bus() -> None:
    bus = make_bus(load_config(None), CollectorRegistry())
    assert type(bus) is EventBus


def test_a_broker_url_makes_the_bus_cross_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTI_CLUSTER__BROKER_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("CTI_CLUSTER__NODE", "node-2")
    bus = make_bus(load_config(None), CollectorRegistry())
    assert isinstance(bus, NatsBus)
    assert bus.node == "node-2" and bus.durable == "node-node-2"
    assert bus.prefix == "cti.events"  # the default stream's subjects, as always


def test_each_named_stream_has_subjects_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """JetStream refuses a stream whose subjects overlap another's: two clusters (or test
    runs) on one broker would fight over cti.events.> otherwise."""
    monkeypatch.setenv("CTI_CLUSTER__BROKER_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("CTI_CLUSTER__STREAM", "STAGING")
    bus = make_bus(load_config(None), CollectorRegistry())
    assert isinstance(bus, NatsBus) and bus.prefix == "cti.STAGING"


@pytest.mark.parametrize(
    ("key", "value"),
    [("BROKER_URL", "redis://x"), ("NODE", "a b"), ("SERVER", "a\nb"), ("BUFFER_MAX", "1")],
)
def test_bad_cluster_settings_are_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    monkeypatch.setenv(f"CTI_CLUSTER__{key}", value)
    with pytest.raises(ConfigError, match=f"cluster.{key.lower()}"):
        load_config(None)


def test_a_cluster_needs_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTI_CLUSTER__BROKER_URL", "nats://127.0.0.1:4222")

    async def nothing() -> None:
        return None

    with pytest.raises(ConfigError, match="not PostgreSQL"):
        make_lease(load_config(None), nothing, nothing)
    monkeypatch.setenv("CTI_DATABASE__URL", "postgresql://cti@db.example/cti")
    monkeypatch.setenv("CTI_CLUSTER__SERVER", "ast-a")
    lease = make_lease(load_config(None), nothing, nothing)
    assert lease is not None and lease.server == "ast-a"
    assert lease.dsn == "postgresql://cti@db.example/cti"
    # a cut-off driver stops before PostgreSQL frees its lock for another node
    assert lease.release_after_s > lease.timeout_s + lease.check_s


def test_one_node_has_no_lease() -> None:
    async def nothing() -> None:
        return None

    assert make_lease(load_config(None), nothing, nothing) is None
