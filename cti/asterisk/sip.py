"""The instance's SIP transports and trunks, rendered from configuration.

``cti asterisk up`` (and the test harness) writes ``pjsip_transports.conf`` and
``pjsip_trunks.conf`` beside the shipped pjsip.conf, which includes them: SIP over UDP
(and TCP, TLS when configured) on the configured address and port with the site's NAT
settings, the inbound carrier trunk (the addresses its calls come from) and the outbound
``carrier`` trunk (host, port, registration, digest auth, caller ID). Every value was
validated by the configuration models (cti.config); the renderer checks again that no
value can add a line or a section to Asterisk's configuration.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CarrierSpec", "SipSpec", "render_transports", "render_trunks", "write_sip_files"]

TRANSPORTS_FILE = "pjsip_transports.conf"
TRUNKS_FILE = "pjsip_trunks.conf"
KEYS_DIR = "keys"
_SAFE = re.compile(r"[^\r\n;\[\]\0]*")


@dataclass(frozen=True)
class CarrierSpec:
    host: str
    port: int = 5060
    transport: str = "udp"  # udp | tcp | tls
    username: str = ""
    password: str = field(default="", repr=False)
    register: bool = False
    caller_id: str = ""  # the number presented on outbound calls (E.164 or national)
    from_domain: str = ""
    # seconds between OPTIONS to the carrier's contact; 0: none (the contact is never
    # marked Unavailable, for carriers that ignore OPTIONS)
    qualify_s: int = 60


@dataclass(frozen=True)
class SipSpec:
    bind: str = "127.0.0.1"
    tcp: bool = False
    tls_port: int = 0  # 0: no TLS transport
    tls_cert_file: str = ""  # host paths, copied into the instance's etc/keys/
    tls_key_file: str = ""
    external_address: str = ""
    local_nets: tuple[str, ...] = ()
    trunk_match: tuple[str, ...] = ("127.0.0.1",)
    carrier: CarrierSpec | None = None


def _v(value: object) -> str:
    text = str(value)
    if not _SAFE.fullmatch(text) or text != text.strip():
        raise ValueError(f"value not allowed in pjsip.conf: {text!r}")
    return text


def _qualify(seconds: int) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= 86400:
        raise ValueError(f"qualify_s: 0-86400 seconds, not {seconds!r}")
    return seconds


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_transports(spec: SipSpec, sip_port: int, inner_etc: str) -> str:
    """The transports; ``inner_etc``: the configuration directory as Asterisk sees it."""
    nat: list[str] = []
    if spec.external_address:
        nat += [f"external_media_address = {_v(spec.external_address)}",
                f"external_signaling_address = {_v(spec.external_address)}"]  # fmt: skip
    nat += [f"local_net = {_v(n)}" for n in spec.local_nets]
    out = ["; Written by cti asterisk up from [asterisk.sip]: do not edit.", ""]

    def transport(name: str, protocol: str, port: int, *extra: str) -> None:
        out.extend([f"[{name}]", "type = transport", f"protocol = {protocol}",
                    f"bind = {_host_port(_v(spec.bind), port)}", *nat, *extra, ""])  # fmt: skip

    transport("transport-udp", "udp", sip_port)
    if spec.tcp:
        transport("transport-tcp", "tcp", sip_port)
    if spec.tls_port:
        transport(
            "transport-tls", "tls", spec.tls_port,
            f"cert_file = {inner_etc}/{KEYS_DIR}/sip.crt",
            f"priv_key_file = {inner_etc}/{KEYS_DIR}/sip.key",
            "method = tlsv1_2",
        )  # fmt: skip
    out += [
        "; SIP over WebSocket for browser phones: served by Asterisk's HTTP server",
        "; (http.conf, path /ws); this bind is required by the object and ignored",
        "[transport-ws]", "type = transport", "protocol = ws", "bind = 0.0.0.0", "",
    ]  # fmt: skip
    return "\n".join(out)


def render_trunks(spec: SipSpec) -> str:
    out = [
        "; Written by cti asterisk up from [asterisk.sip] and [asterisk.carrier]: do not edit.",
        "",
        "; The inbound carrier trunk: calls from these addresses enter the inbound context.",
        "; Its caller ID is the From header, never a P-Asserted-Identity or Remote-Party-ID a",
        "; caller may add, and the far end cannot rewrite the connected line of our agents'",
        "; channels (what it sends is caller-controlled text in AMI events, design.md §5).",
        "[trunk](endpoint-defaults)", "context = cti-inbound", "aors = trunk",
        "trust_id_inbound = no", "trust_connected_line = no", "",
        "[trunk]", "type = aor", "max_contacts = 1", "",
        "[trunk]", "type = identify", "endpoint = trunk",
        *(f"match = {_v(m)}" for m in spec.trunk_match), "",
    ]  # fmt: skip
    c = spec.carrier
    if c is None:
        return "\n".join([
            *out,
            "; The outbound carrier (campaigns dial PJSIP/<number>@carrier): a placeholder",
            "; until [asterisk.carrier] is configured. Nothing may call in through it.",
            "[carrier](endpoint-defaults)", "context = cti-carrier-in", "aors = carrier",
            "trust_id_inbound = no", "trust_connected_line = no", "send_connected_line = no", "",
            "[carrier]", "type = aor", "contact = sip:carrier.invalid:5060", "max_contacts = 1",
            "",
        ])  # fmt: skip
    proto = {"udp": "transport-udp", "tcp": "transport-tcp", "tls": "transport-tls"}[c.transport]
    uri = f"sip:{_host_port(_v(c.host), c.port)}" + (
        f";transport={c.transport}" if c.transport != "udp" else ""
    )
    out += [
        "; The outbound carrier: what the daemon's dials (click-to-call, callbacks, campaigns)",
        "; go out through, as PJSIP/<number>@carrier. It is outbound only: the carrier's",
        "; calls to us come in through the trunk (its addresses in [asterisk.sip] trunk_match).",
        "[carrier](endpoint-defaults)", f"transport = {proto}", "context = cti-carrier-in",
        "aors = carrier", "trust_id_inbound = no", "trust_connected_line = no",
        "send_pai = no", "send_rpid = no",
    ]  # fmt: skip
    if c.username:
        out.append("outbound_auth = carrier")
    if c.caller_id:
        out += [f"callerid = <{_v(c.caller_id)}>", f"from_user = {_v(c.caller_id)}"]
    elif c.username:
        out.append(f"from_user = {_v(c.username)}")
    if c.from_domain:
        out.append(f"from_domain = {_v(c.from_domain)}")
    out += ["", "[carrier]", "type = aor", f"contact = {uri}", "max_contacts = 1",
            f"qualify_frequency = {_qualify(c.qualify_s)}", ""]  # fmt: skip
    if c.username:
        out += ["[carrier]", "type = auth", "auth_type = digest",
                f"username = {_v(c.username)}", f"password = {_v(c.password)}", ""]  # fmt: skip
    if c.register and c.username:
        out += [
            "[carrier]", "type = registration", f"transport = {proto}",
            "outbound_auth = carrier", f"server_uri = {uri}",
            f"client_uri = sip:{_v(c.username)}@{_host_port(c.host, c.port)}",
            f"contact_user = {_v(c.username)}", "endpoint = carrier", "line = yes",
            "retry_interval = 60", "forbidden_retry_interval = 600", "expiration = 3600", "",
        ]  # fmt: skip
    return "\n".join(out)


def write_sip_files(etc_dir: Path, spec: SipSpec, sip_port: int, inner_etc: str) -> None:
    """Write both files (and copy the TLS certificate and key) into ``etc_dir``."""
    if spec.tls_port:
        keys = etc_dir / KEYS_DIR
        keys.mkdir(mode=0o700, exist_ok=True)
        shutil.copyfile(spec.tls_cert_file, keys / "sip.crt")
        shutil.copyfile(spec.tls_key_file, keys / "sip.key")
        (keys / "sip.key").chmod(0o600)
    (etc_dir / TRANSPORTS_FILE).write_text(render_transports(spec, sip_port, inner_etc))
    trunks = etc_dir / TRUNKS_FILE
    trunks.write_text(render_trunks(spec))
    trunks.chmod(0o600)  # the carrier's password
