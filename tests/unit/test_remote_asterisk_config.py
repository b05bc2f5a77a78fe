"""Nodes on other hosts (issue #18): AMI's bind address and ACL, the FastAGI address
Asterisk dials and the AMI secret come from the configuration; AMI off loopback is refused
with an empty or short secret, by the daemon's configuration and by the config generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.asterisk.instance import AsteriskError, InstanceSpec, render_dialplans
from cti.asterisk.runner import DIALPLANS, spec_from_settings
from cti.config import ConfigError, load_config

SECRET = "k" * 32


def remote(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("CTI_ASTERISK__AMI_BIND", "10.1.2.3")
    monkeypatch.setenv("CTI_ASTERISK__AMI_PERMIT", '["10.1.2.0/24", "10.9.0.7"]')
    monkeypatch.setenv("CTI_AGI__ADVERTISE", "10.1.2.50")
    monkeypatch.setenv("CTI_AMI__SECRET", secret)


@pytest.mark.parametrize("secret", ["", "changeme", "x" * 15])
def test_ami_off_loopback_with_no_or_a_weak_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    remote(monkeypatch, secret)
    with pytest.raises(ConfigError, match=r"ami\.secret"):
        load_config(None)


def test_a_node_connecting_to_a_remote_ami_needs_a_strong_secret_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CTI_AMI__HOST", "10.1.2.3")
    monkeypatch.setenv("CTI_AMI__SECRET", "short")
    with pytest.raises(ConfigError, match=r"ami\.host is not loopback"):
        load_config(None)


def test_the_generated_manager_conf_binds_and_permits_as_configured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    remote(monkeypatch, SECRET)
    spec = spec_from_settings(load_config(None))
    render_dialplans(DIALPLANS, tmp_path, spec.placeholders())
    manager = (tmp_path / "manager.conf").read_text()
    assert "bindaddr = 10.1.2.3\n" in manager
    assert "deny = 0.0.0.0/0.0.0.0\npermit = 10.1.2.0/24,10.9.0.7/32\n" in manager
    assert f"secret = {SECRET}\n" in manager
    # Asterisk dials the node's advertised address when asterisk.agi_host is unset
    assert "CTI_AGI = agi://10.1.2.50:4573\n" in (tmp_path / "extensions.conf").read_text()


def test_asterisk_agi_host_names_a_vip_in_front_of_the_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote(monkeypatch, SECRET)
    monkeypatch.setenv("CTI_ASTERISK__AGI_HOST", "agi-vip.example.net")
    assert spec_from_settings(load_config(None)).agi_host == "agi-vip.example.net"


def test_the_single_box_default_stays_on_loopback() -> None:
    settings = load_config(None)
    assert settings.asterisk.ami_bind == "127.0.0.1"
    assert settings.asterisk.ami_permit == ["127.0.0.1/32"]
    assert settings.agi.allow == ["127.0.0.0/8", "::1/128"]


def test_the_generator_refuses_a_weak_secret_whatever_built_the_spec() -> None:
    spec = InstanceSpec(name="x", ami_secret="short", ami_bind="10.0.0.1")
    with pytest.raises(AsteriskError, match="shorter than 16"):
        spec.check_exposure()
    InstanceSpec(name="x", ami_secret="short").check_exposure()  # loopback: as before


@pytest.mark.parametrize(
    ("key", "value"),
    [("ASTERISK__AMI_BIND", "host.example"), ("ASTERISK__AMI_PERMIT", '["10.0.0.0/33"]'),
     ("ASTERISK__AMI_PERMIT", "[]"), ("AGI__ALLOW", '["nope"]'),
     ("AGI__ADVERTISE", "a\\nb")],
)  # fmt: skip
def test_bad_addresses_are_refused(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(f"CTI_{key}", value)
    with pytest.raises(ConfigError):
        load_config(None)


def test_a_phones_file_from_before_the_push_is_dropped_a_pushed_one_kept(tmp_path: Path) -> None:
    """Decision 0031: the phone templates moved out of pjsip.conf; a pjsip_phones.conf
    written without them would break res_pjsip at boot; one pushed (templates included)
    stays."""
    spec = InstanceSpec(name="x", ami_secret="s" * 32)
    phones = tmp_path / "pjsip_phones.conf"
    phones.write_text("[a-sip1](phone-sip)\naors = a-sip1\n")
    render_dialplans(DIALPLANS, tmp_path, spec.placeholders())
    assert not phones.exists()
    assert "[phone-sip](!)" in (tmp_path / "pjsip_phones_base.conf").read_text()
    assert "[phone-sip]" not in (tmp_path / "pjsip.conf").read_text()
    pushed = (tmp_path / "pjsip_phones_base.conf").read_text() + "[a-sip1](phone-sip)\n"
    phones.write_text(pushed)
    render_dialplans(DIALPLANS, tmp_path, spec.placeholders())
    assert phones.read_text() == pushed
