"""Where a phone is registered across a cluster's servers: the last registration wins; a
registration gone from the server the phone is on leaves it nowhere; one node decides
nothing (every interface is placed on its one server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cti.events import PhoneLocated
from phones.locations import PhoneLocations

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_the_last_registration_wins_and_an_older_one_arriving_late_does_not() -> None:
    here = PhoneLocations("a")
    assert here.on_located(PhoneLocated(at(1), "ag1-sip1", "b", registered=True))
    assert here.where("ag1-sip1") == "b" and not here.here("ag1-sip1")
    assert here.on_located(PhoneLocated(at(3), "ag1-sip1", "a", registered=True))
    assert here.here("ag1-sip1")
    # B's event from before A's arrives late (the broker redelivered it): A stays
    assert not here.on_located(PhoneLocated(at(2), "ag1-sip1", "b", registered=True))
    assert here.where("ag1-sip1") == "a"
    assert here.located_on("a") == ["ag1-sip1"] and here.located_on("b") == []


def test_a_registration_gone_elsewhere_does_not_move_the_phone() -> None:
    here = PhoneLocations("a")
    here.on_located(PhoneLocated(at(1), "p", "a", registered=True))
    assert not here.on_located(PhoneLocated(at(2), "p", "b", registered=False))
    assert here.where("p") == "a"
    assert here.on_located(PhoneLocated(at(3), "p", "a", registered=False))
    assert here.where("p") is None and not here.here("p")


def test_one_node_places_everything_and_only_pjsip_interfaces_are_phones() -> None:
    single = PhoneLocations(None)
    assert single.phone_of("PJSIP/p") is None and single.here("p")
    cluster = PhoneLocations("a")
    assert cluster.phone_of("Local/3201@cti-sim-agents/n") is None
    assert cluster.phone_of("PJSIP/ag1-sip1") == "ag1-sip1"
