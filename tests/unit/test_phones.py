"""Phones: what reaches Asterisk's configuration, credentials, registration state."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cti.ami.protocol import Message
from phones.blocking import Blocker, remote_ip
from phones.credentials import browser_password, ha1, new_password, phone_key
from phones.instance_conf import read_ports
from phones.pjsip import FILE_NAME, SHARDS, PhoneEntry, config_files, render, shard_file
from phones.registrations import Registrations

HA1 = ha1("a-sip1", "cti", "pw")


def test_a_phone_is_an_endpoint_an_aor_and_a_digest_auth() -> None:
    text = render([PhoneEntry("a-sip1", "sip", "cti", HA1)])
    assert "[a-sip1](phone-sip)" in text and "[a-sip1](phone-aor)" in text
    assert f"password_digest = md5:{HA1}" in text
    assert "pw" not in text.replace("password_digest", "")


@pytest.mark.parametrize(
    "entry",
    [
        PhoneEntry("a\nb", "sip", "cti", HA1),
        PhoneEntry("a]b", "sip", "cti", HA1),
        PhoneEntry("a-sip1", "iax", "cti", HA1),
        PhoneEntry("a-sip1", "sip", "cti\nx=y", HA1),
        PhoneEntry("a-sip1", "sip", "cti", "md5:zz"),
    ],
)
def test_nothing_else_reaches_the_file(entry: PhoneEntry) -> None:
    with pytest.raises(ValueError):
        render([entry])


def test_blocked_addresses_become_one_acl() -> None:
    text = render([], ["198.51.100.7", "198.51.100.7", "2001:db8::1"])
    assert text.count("type = acl") == 1
    assert "deny = 198.51.100.7/32" in text and "deny = 2001:db8::1/128" in text
    with pytest.raises(ValueError):
        render([], ["1.2.3.4\ndeny=0.0.0.0/0"])


def test_phones_are_spread_over_files_by_name_and_the_acl_has_its_own() -> None:
    book = [PhoneEntry(f"agent{i}-sip1", "sip", "cti", HA1) for i in range(200)]
    index, *shards = config_files(book, ["198.51.100.7"])
    assert index.name == FILE_NAME and [c.name for c in index.categories] == ["cti-blocked"]
    assert len(shards) == SHARDS and len({f.name for f in shards}) == SHARDS
    for f in shards:
        assert all(shard_file(c.name) == f.name for c in f.categories)
    assert sum(len(f.categories) for f in shards) == 3 * len(book)
    assert max(len(f.categories) for f in shards) < 3 * 20  # spread, not piled up
    # a phone's file depends on its name only: the others do not move when it comes
    more = config_files([*book, PhoneEntry("zz-sip1", "sip", "cti", HA1)])
    moved = [a.name for a, b in zip(shards, more[1:], strict=True) if a.categories != b.categories]
    assert moved == [shard_file("zz-sip1")]


def test_credentials() -> None:
    assert len(new_password()) == 24 and new_password() != new_password()
    assert ha1("u", "r", "p") == hashlib.md5(b"u:r:p", usedforsecurity=False).hexdigest()
    key = phone_key("", "ami secret")
    assert key != phone_key("", "other") and phone_key("set", "ami secret") == b"set"
    one = browser_password(key, "a-web1", 1)
    assert one == browser_password(key, "a-web1", 1)
    assert one != browser_password(key, "a-web1", 2) != browser_password(key, "a-web2", 1)
    assert len(one) == 32


def test_registrations_follow_contacts() -> None:
    regs = Registrations()
    regs.replace_all([Message([("ObjectName", "a-sip1;@abc"), ("Uri", "sip:x@1.2.3.4"),
                               ("Status", "NonQualified")])])  # fmt: skip
    assert regs.registered("a-sip1") and not regs.registered("a-web1")
    regs.on_event(Message([("Event", "ContactStatus"), ("AOR", "a-web1"), ("URI", "sip:y@ws"),
                           ("ContactStatus", "Created")]))  # fmt: skip
    assert regs.registered("a-web1")
    regs.on_event(Message([("Event", "ContactStatus"), ("AOR", "a-web1"), ("URI", "sip:y@ws"),
                           ("ContactStatus", "Removed")]))  # fmt: skip
    assert not regs.registered("a-web1")


def contact(aor: str, uri: str, status: str) -> Message:
    return Message([("Event", "ContactStatus"), ("AOR", aor), ("URI", uri),
                    ("ContactStatus", status)])  # fmt: skip


def test_a_phone_gains_a_contact_in_either_order_of_the_old_ones_removal() -> None:
    regs = Registrations()
    assert regs.on_event(contact("a-web1", "sip:old@ws", "Created")) == ("a-web1", "sip:old@ws")
    # a reloaded page: the new contact first, then the old one removed (remove_existing)
    assert regs.on_event(contact("a-web1", "sip:new@ws", "Created")) == ("a-web1", "sip:new@ws")
    assert regs.on_event(contact("a-web1", "sip:old@ws", "Removed")) is None
    # a refresh or a qualify of a contact it holds is no gain
    assert regs.on_event(contact("a-web1", "sip:new@ws", "Updated")) is None
    assert regs.on_event(contact("a-web1", "sip:new@ws", "Reachable")) is None
    # the old one removed first (its WebSocket closed), then the new one
    assert regs.on_event(contact("a-web1", "sip:new@ws", "Removed")) is None
    assert not regs.registered("a-web1")
    assert regs.on_event(contact("a-web1", "sip:3rd@ws", "Created")) == ("a-web1", "sip:3rd@ws")
    assert regs.on_event(Message([("Event", "PeerStatus"), ("AOR", "a-web1")])) is None


def test_ports_are_read_back_from_the_rendered_configuration(tmp_path: Path) -> None:
    (tmp_path / "pjsip.conf").write_text(
        "[transport-udp]\ntype = transport\nprotocol = udp\nbind = 127.0.0.1:5070\n"
        "[transport-ws]\ntype = transport\nprotocol = ws\nbind = 0.0.0.0\n"
    )
    (tmp_path / "http.conf").write_text("[general]\nenabled = yes\nbindport = 8089 ; ws\n")
    ports = read_ports(tmp_path)
    assert ports.sip == {"udp": 5070} and ports.ws == 8089 and not ports.wss
    assert read_ports(None).ws is None


def _failure(ip: str, event: str = "ChallengeResponseFailed", service: str = "PJSIP") -> Message:
    return Message([("Event", event), ("Service", service),
                    ("RemoteAddress", f"IPV4/UDP/{ip}/5060")])  # fmt: skip


def test_wrong_credentials_block_an_address_for_a_while() -> None:
    b = Blocker(3, window_s=60, block_s=600, never=["10.0.0.0/8"])
    assert b.on_event(_failure("198.51.100.7"), 0) is None
    assert b.on_event(_failure("198.51.100.7", "InvalidPassword"), 1) is None
    assert b.on_event(_failure("198.51.100.8"), 1) is None
    assert b.on_event(_failure("198.51.100.7"), 2) == "198.51.100.7"
    assert set(b.blocked) == {"198.51.100.7"}
    assert b.on_event(_failure("198.51.100.7"), 3) is None  # already blocked
    assert b.expire(601) == [] and b.expire(602) == ["198.51.100.7"] and not b.blocked


def test_what_does_not_count() -> None:
    b = Blocker(2, window_s=10, block_s=60, never=["10.0.0.0/8"])
    for msg in (_failure("10.1.2.3"), _failure("10.1.2.3"), _failure("1.2.3.4", service="AMI"),
                _failure("1.2.3.4", "SuccessfulAuth"), _failure("1.2.3.4", "ChallengeSent"),
                Message([("Event", "InvalidPassword"), ("Service", "PJSIP"),
                         ("RemoteAddress", "IPV4/UDP/1.2.3.4\\r\\n/5060")])):  # fmt: skip
        assert b.on_event(msg, 0) is None
    assert b.on_event(_failure("1.2.3.4"), 0) is None
    assert b.on_event(_failure("1.2.3.4"), 11) is None  # the first fell out of the window
    assert b.on_event(_failure("1.2.3.4"), 12) == "1.2.3.4"
    assert Blocker(0, 10, 10).on_event(_failure("1.2.3.4"), 0) is None  # 0: never block
    assert remote_ip("IPV6/UDP/[2001:db8::1]/5060") == "2001:db8::1"
