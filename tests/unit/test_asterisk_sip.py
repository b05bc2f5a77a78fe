"""SIP transports and trunks rendered from configuration (cti.asterisk.sip)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.asterisk.runner import sip_spec
from cti.asterisk.sip import CarrierSpec, SipSpec, render_transports, render_trunks
from cti.config import ConfigError, Settings, load_config


def test_the_default_is_udp_on_loopback_and_the_local_trunk() -> None:
    spec = sip_spec(Settings())
    text = render_transports(spec, 5060, "/etc/x")
    assert "bind = 127.0.0.1:5060" in text and "transport-tcp" not in text
    assert "[transport-ws]" in text and "external_" not in text
    trunks = render_trunks(spec)
    assert "match = 127.0.0.1" in trunks and "contact = sip:carrier.invalid:5060" in trunks


def test_nat_tcp_tls_and_the_carrier(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "k.pem").write_text("key")
    s = Settings(asterisk={
        "sip_port": 5070,
        "sip": {"bind": "0.0.0.0", "tcp": True, "tls_port": 5071,  # noqa: S104
                "tls_cert_file": str(tmp_path / "c.pem"), "tls_key_file": str(tmp_path / "k.pem"),
                "external_address": "203.0.113.5", "local_nets": ["192.168.1.7/24"],
                "trunk_match": ["198.51.100.0/28", "sip.carrier.example"]},
        "carrier": {"host": "sip.carrier.example", "transport": "tls", "username": "acct",
                    "password": "pw%1", "registration": True, "caller_id": "+862112345678"},
    })  # fmt: skip
    spec = sip_spec(s)
    text = render_transports(spec, 5070, "/srv/cti/x/etc")
    for line in ("bind = 0.0.0.0:5070", "protocol = tcp", "bind = 0.0.0.0:5071",
                 "cert_file = /srv/cti/x/etc/keys/sip.crt", "local_net = 192.168.1.0/24",
                 "external_media_address = 203.0.113.5"):  # fmt: skip
        assert line in text, line
    trunks = render_trunks(spec)
    for line in ("match = 198.51.100.0/28", "match = sip.carrier.example",
                 "contact = sip:sip.carrier.example:5060;transport=tls", "password = pw%1",
                 "type = registration", "from_user = +862112345678",
                 "transport = transport-tls"):  # fmt: skip
        assert line in trunks, line


@pytest.mark.parametrize(
    "asterisk",
    [
        {"sip": {"bind": "0.0.0.0\nx"}},
        {"sip": {"bind": "pbx.example.com"}},
        {"sip": {"tls_port": 5061}},
        {"sip": {"tls_port": 5061, "tls_cert_file": "/nonexistent", "tls_key_file": "/x"}},
        {"sip": {"local_nets": ["lan"]}},
        {"sip": {"trunk_match": []}},
        {"sip": {"external_address": "a b"}},
        {"carrier": {"host": "h;x"}},
        {"carrier": {"host": "h", "password": "p;w"}},
        {"carrier": {"host": "h", "registration": True}},
        {"carrier": {"host": "h", "caller_id": "call me"}},
        {"carrier": {"host": "h", "transport": "tcp"}},
        {"carrier": {"host": "h", "qualify_s": -1}},
        {"carrier": {"host": "h", "qualify_s": 86401}},
        {"carrier": {"host": "h", "qualify_s": "often"}},
        {"ws_bind": "any"},
    ],
)
def test_bad_transport_settings_are_refused(asterisk: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Settings(asterisk=asterisk)


def test_a_bad_carrier_password_is_not_echoed(tmp_path: Path) -> None:
    conf = tmp_path / "cti.toml"
    conf.write_text('[asterisk.carrier]\nhost = "h"\npassword = "secret;value"\n')
    with pytest.raises(ConfigError) as err:
        load_config(conf)
    assert "asterisk.carrier.password" in str(err.value) and "secret;value" not in str(err.value)


def test_the_carrier_is_qualified_every_qualify_s_or_never(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Default 60 s; 0 renders qualify_frequency = 0: Asterisk sends no OPTIONS and never
    marks the contact Unavailable (a carrier that ignores OPTIONS stays diallable)."""

    def qualify(carrier: dict[str, object]) -> list[str]:
        trunks = render_trunks(sip_spec(Settings(asterisk={"carrier": carrier})))
        return [line for line in trunks.splitlines() if line.startswith("qualify_")]

    assert qualify({"host": "h"}) == ["qualify_frequency = 60"]
    assert qualify({"host": "h", "qualify_s": 15}) == ["qualify_frequency = 15"]
    assert qualify({"host": "h", "qualify_s": 0}) == ["qualify_frequency = 0"]
    monkeypatch.setenv("CTI_ASTERISK__CARRIER__HOST", "h")
    monkeypatch.setenv("CTI_ASTERISK__CARRIER__QUALIFY_S", "0")
    assert sip_spec(load_config(None)).carrier == CarrierSpec(host="h", qualify_s=0)


def test_the_renderer_refuses_what_config_would_have() -> None:
    with pytest.raises(ValueError):
        render_trunks(SipSpec(carrier=CarrierSpec(host="h\n[evil]")))
    with pytest.raises(ValueError):
        render_trunks(SipSpec(carrier=CarrierSpec(host="h", qualify_s=-5)))
    with pytest.raises(ValueError):
        render_transports(SipSpec(local_nets=("10.0.0.0/8\nx",)), 5060, "/e")
