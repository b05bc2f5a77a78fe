"""Daemon configuration: a TOML file, overridden by ``CTI_<SECTION>__<KEY>`` environment
variables (e.g. ``CTI_AMI__SECRET``), validated by pydantic. Every problem is reported as
one clear line naming the key and where the value came from; nothing starts half-configured.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "CTI_"


def networks(values: list[str], example: str = "192.168.0.0/16") -> list[str]:
    """CIDR networks from configuration, normalised (``10.1.2.3/8`` -> ``10.0.0.0/8``);
    a ValueError naming the first one that is not a network."""
    out = []
    for net in values:
        try:
            out.append(str(ipaddress.ip_network(net, strict=False)))
        except ValueError:
            raise ValueError(f"not a network {net!r} (CIDR like {example})") from None
    return out


#: AMI reachable from other hosts needs a secret at least this long (cti setup: 32 hex)
MIN_EXPOSED_SECRET = 16


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConfigError(ValueError):
    """The configuration is invalid; ``str()`` is meant for the user as is."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SiteConfig(_Section):
    name: str = "call center"
    timezone: str = "UTC"
    default_region: str = "CN"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name like Asia/Shanghai)"
            ) from exc
        return v

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {v!r} (ISO 3166 code like CN, US, FR)")
        return v.upper()


class AmiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "cti"
    secret: str = Field("", repr=False)
    ping_interval: float = Field(10.0, gt=0)
    action_timeout: float = Field(5.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @field_validator("username", "secret")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if any(c in v for c in "\r\n\0"):
            raise ValueError("must not contain CR, LF or NUL")
        return v


_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*"
)


def _ip(v: str) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise ValueError(f"not an IP address {v!r}") from None


def _host(v: str) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        if not _HOSTNAME.fullmatch(v):
            raise ValueError(f"not an IP address or host name {v!r}") from None
        return v


class SipConfig(_Section):
    """The instance's SIP transports (cti.asterisk.sip): applied by ``cti asterisk up``."""

    # the address SIP listens on (UDP, and TCP/TLS when on): 0.0.0.0 for phones on the LAN
    bind: str = "127.0.0.1"
    tcp: bool = False  # SIP over TCP on asterisk.sip_port as well
    tls_port: int = Field(0, ge=0, le=65535)  # SIP over TLS on this port; 0: off
    tls_cert_file: Path | None = None  # PEM certificate (chain) and key, for TLS
    tls_key_file: Path | None = None
    # NAT: the public address phones and the carrier see (SDP and Contact), and the
    # networks reached directly (no rewriting for them)
    external_address: str = ""
    local_nets: list[str] = []
    # addresses (or networks, or host names) the inbound carrier's calls come from
    trunk_match: list[str] = ["127.0.0.1"]

    @field_validator("bind")
    @classmethod
    def _bind(cls, v: str) -> str:
        return _ip(v)

    @field_validator("external_address")
    @classmethod
    def _external(cls, v: str) -> str:
        return _host(v) if v else v

    @field_validator("local_nets")
    @classmethod
    def _nets(cls, v: list[str]) -> list[str]:
        return networks(v)

    @field_validator("trunk_match")
    @classmethod
    def _match(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one address the inbound carrier calls from")
        out = []
        for m in v:
            try:
                out.append(str(ipaddress.ip_network(m, strict=False)))
            except ValueError:
                out.append(_host(m))
        return out

    @model_validator(mode="after")
    def _tls(self) -> SipConfig:
        if self.tls_port:
            for name in ("tls_cert_file", "tls_key_file"):
                path = getattr(self, name)
                if path is None:
                    raise ValueError(f"tls_port is set: {name} is needed")
                if not path.is_file():
                    raise ValueError(f"{name}: no such file {path}")
        return self


class CarrierConfig(_Section):
    """The outbound carrier trunk, PJSIP endpoint ``carrier`` (cti.asterisk.sip)."""

    host: str
    port: int = Field(5060, ge=1, le=65535)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    # digest credentials the carrier gave (empty: it authorises by address)
    username: str = ""
    password: str = Field("", repr=False)
    registration: bool = False  # register to the carrier (needs username)
    # the number presented on outbound calls (From user and caller ID)
    caller_id: str = ""
    from_domain: str = ""
    # seconds between the OPTIONS requests that check the carrier answers (a contact that
    # leaves one unanswered is Unavailable and not dialled until it answers again);
    # 0: never ask (for carriers that ignore OPTIONS: the contact is then always dialled)
    qualify_s: int = Field(60, ge=0, le=86400)

    @field_validator("host")
    @classmethod
    def _h(cls, v: str) -> str:
        return _host(v)

    @field_validator("from_domain")
    @classmethod
    def _d(cls, v: str) -> str:
        return _host(v) if v else v

    @field_validator("username")
    @classmethod
    def _user(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9_.+@-]{1,64}", v):
            raise ValueError("1-64 of A-Z a-z 0-9 _ . + @ -")
        return v

    @field_validator("password")
    @classmethod
    def _password(cls, v: str) -> str:
        if len(v) > 128 or any(c in v for c in "\r\n\0;[]") or v != v.strip():
            raise ValueError("up to 128 characters, no CR, LF, ';', brackets or outer spaces")
        return v

    @field_validator("caller_id")
    @classmethod
    def _cid(cls, v: str) -> str:
        if v and not re.fullmatch(r"\+?[0-9]{2,20}", v):
            raise ValueError("a number: digits, optional leading +")
        return v

    @model_validator(mode="after")
    def _register(self) -> CarrierConfig:
        if self.registration and not self.username:
            raise ValueError("registration needs a username")
        return self


class AsteriskConfig(_Section):
    instance: str = "default"
    # host directory holding queue_log and cdr-custom/ (recovery and statistics read them
    # with records = "files"); unset: the local instance's (cti asterisk up), else the
    # daemon refuses to start (records = "files")
    log_dir: Path | None = None
    # host directory of the instance's configuration, only read (the phones' transports);
    # unset: the local instance's. Nothing is written there: the ACD's and the phones'
    # files reach Asterisk over AMI (decision 0031), so a node on another host omits it
    etc_dir: Path | None = None
    inbound_contexts: list[str] = ["cti-inbound"]
    # the instance's transports (cti asterisk up renders them into pjsip.conf / http.conf):
    # SIP over UDP/TCP on sip_port, SIP over WebSocket (browser phones) on Asterisk's
    # HTTP server at ws_port (path /ws)
    sip_port: int = Field(5060, ge=1, le=65535)
    ws_port: int = Field(8088, ge=1, le=65535)
    ws_bind: str = "127.0.0.1"
    # AMI as the generated manager.conf serves it: the address it listens on, and the
    # networks its account accepts logins from (the daemon nodes'; everything else is
    # denied). A non-loopback bind needs a strong ami.secret (Settings refuses otherwise)
    ami_bind: str = "127.0.0.1"
    ami_permit: list[str] = ["127.0.0.1/32"]
    # the host Asterisk dials for FastAGI (agi://<agi_host>:<agi.port>, the dialplan's
    # CTI_AGI): a node or a VIP in front of the nodes. "": agi.advertise, else agi.host.
    # The node driving the server sets CTI_AGI to its own agi.advertise when it connects
    agi_host: str = ""
    sip: SipConfig = SipConfig()
    # the outbound carrier ([asterisk.carrier]); unset: no endpoint 'carrier'
    carrier: CarrierConfig | None = None
    # where the server's own records (queue_log, CDR) reach the daemon (decision 0029):
    # "files": log_dir on this host (the single box); "postgresql": Asterisk writes them
    # into the store's tables itself (needs database.url on PostgreSQL; no shared mount
    # of the log directory). Applied to Asterisk's configuration by `cti asterisk up`
    records: Literal["files", "postgresql"] = "files"
    # how Asterisk reaches PostgreSQL when records = "postgresql" ("" / unset: the
    # database.url's host and port, as the daemon reaches it)
    records_host: str = ""
    records_port: int | None = Field(None, ge=1, le=65535)

    @field_validator("records_host")
    @classmethod
    def _records_host(cls, v: str) -> str:
        return _host(v) if v else v

    @field_validator("ws_bind", "ami_bind")
    @classmethod
    def _ws_bind(cls, v: str) -> str:
        return _ip(v)

    @field_validator("ami_permit")
    @classmethod
    def _ami_permit(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one network the daemon nodes connect from")
        return networks(v, "10.0.0.0/24")

    @field_validator("agi_host")
    @classmethod
    def _agi_host(cls, v: str) -> str:
        return _host(v) if v else v

    @model_validator(mode="after")
    def _carrier_transport(self) -> AsteriskConfig:
        c = self.carrier
        if c is not None and c.transport == "tcp" and not self.sip.tcp:
            raise ValueError("carrier.transport tcp needs sip.tcp = true")
        if c is not None and c.transport == "tls" and not self.sip.tls_port:
            raise ValueError("carrier.transport tls needs sip.tls_port")
        return self


class ClusterConfig(_Section):
    """Several daemon nodes (docs/deploy.md, decision 0028). Empty ``broker_url``: one node,
    in-process bus, no lease (the single-box default)."""

    # NATS with JetStream that carries domain events between nodes, e.g. nats://nats:4222
    broker_url: str = ""
    # this node's name, unique in the cluster (its durable consumer); "": the host name
    node: str = ""
    stream: str = "CTI_EVENTS"
    # events kept while the broker is unreachable (past that the oldest are dropped)
    buffer_max: int = Field(10_000, ge=100, le=10_000_000)
    # how long the broker keeps events for a node that is away
    retention_s: float = Field(3600.0, ge=60)
    # the Asterisk server this node may drive, one node at a time (a PostgreSQL lease);
    # "": asterisk.instance
    server: str = ""
    # the lease is checked this often; a node that cannot confirm it for lease_timeout_s
    # stops driving the server (before PostgreSQL frees it for another node)
    lease_check_s: float = Field(0.5, gt=0, le=10)
    lease_timeout_s: float = Field(2.0, gt=0, le=30)
    # this node's HTTP as the other nodes reach it, e.g. "http://10.0.5.11:8080": what a
    # node holds on its own disk (its recordings) is fetched from it through this. "": the
    # other nodes cannot reach it (fine when the nodes share their directories)
    http_url: str = Field(default="", pattern=r"^(https?://[A-Za-z0-9.:\[\]-]+/?)?$")

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, v: str) -> str:
        if v and urlsplit(v).scheme not in ("nats", "tls"):
            raise ValueError(f"not a NATS URL {v!r} (like nats://127.0.0.1:4222)")
        return v

    @field_validator("node", "server", "stream")
    @classmethod
    def _name(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", v):
            raise ValueError(f"{v!r}: letters, digits, _ and - only (at most 64)")
        return v


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///var/cti.db"


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # the site's public URL(s), e.g. ["https://cti.example.com"]: the only browser origins
    # allowed on websockets and cookie-signed writes (cti.web.origins). Empty: loopback
    # origins on the daemon's own port (make up, tests)
    public_urls: list[str] = []
    # other browser origins allowed besides the public URLs (an integration's page)
    allowed_origins: list[str] = []
    # /metrics without a token only from these networks (CIDR); with a token from anywhere
    metrics_allow: list[str] = ["127.0.0.0/8", "::1/128"]

    @field_validator("metrics_allow")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        networks(v, "10.0.0.0/8")
        return v

    @field_validator("public_urls", "allowed_origins")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"not an http(s) URL {url!r} (like https://cti.example.com)")
        return v

    # browser libraries installed from the npm registry (scripts/bootstrap.sh), served
    # under /vendor/; None: the checkout's node_modules
    vendor_dir: Path | None = None


class AuthConfig(_Section):
    """Accounts and browser sessions (cti.accounts)."""

    session_idle_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    session_max_hours: int = Field(12, ge=1, le=24 * 31)
    # failed sign-ins within the window before sign-in is refused (429)
    failure_window_minutes: int = Field(15, ge=1, le=24 * 60)
    failures_per_user: int = Field(5, ge=1, le=1000)
    failures_per_address: int = Field(20, ge=1, le=100000)
    min_password_length: int = Field(10, ge=8, le=128)
    # argon2id cost (RFC 9106's second recommended option by default)
    argon2_time_cost: int = Field(3, ge=1, le=20)
    argon2_memory_kib: int = Field(65536, ge=1024, le=4 * 1024 * 1024)
    argon2_parallelism: int = Field(4, ge=1, le=64)
    # admins must have a TOTP second factor to sign in
    require_totp_for_admins: bool = False


class AgiConfig(_Section):
    # the address FastAGI listens on (0.0.0.0: every interface)
    host: str = "127.0.0.1"
    port: int = Field(4573, ge=0, le=65535)
    # the address Asterisk reaches this node's FastAGI at; set, the node makes it the
    # dialplan's CTI_AGI each time it connects to the server it drives. "": leave CTI_AGI
    # as generated (asterisk.agi_host)
    advertise: str = ""
    # networks FastAGI accepts connections from (the Asterisk servers'); others are closed
    allow: list[str] = ["127.0.0.0/8", "::1/128"]
    # a command's answer (and, while a prompt plays, how often the channel is checked)
    command_timeout_s: float = Field(10.0, gt=0, le=60)
    # the longest a prompt plus its digit wait may take
    media_timeout_s: float = Field(600.0, gt=0, le=3600)

    @field_validator("advertise")
    @classmethod
    def _advertise(cls, v: str) -> str:
        return _host(v) if v else v

    @field_validator("allow")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        return networks(v, "10.0.0.0/24")

    @property
    def dial_host(self) -> str:
        """The host Asterisk dials for this node's FastAGI ("" when it cannot be told)."""
        if self.advertise:
            return self.advertise
        try:
            return "" if ipaddress.ip_address(self.host).is_unspecified else self.host
        except ValueError:  # a host name
            return self.host


# phonenumbers' PhoneNumberType names a dial policy may allow
NUMBER_TYPES = frozenset(
    name
    for name in vars(phonenumbers.PhoneNumberType)
    if name.isupper() and not name.startswith("_")
)
_DIAL_PATTERN = re.compile(r"\+[0-9X]{1,15}")


class DialConfig(_Section):
    """The dial policy (cti.dialpolicy): what any outbound path may dial."""

    # ISO regions callable; None: the site's own (site.default_region)
    countries: list[str] | None = None
    # phonenumbers number types callable (premium rate, shared cost, UAN, ... are not)
    types: list[str] = ["FIXED_LINE", "MOBILE", "FIXED_LINE_OR_MOBILE", "TOLL_FREE"]
    # E.164 prefixes (X: any digit) never dialled, whatever else allows them
    deny: list[str] = []
    # E.164 prefixes dialled whatever their country or type (never past deny, DNC, limits)
    allow: list[str] = []
    # dials an agent may start per local day (click-to-call, callbacks by hand); 0: no limit
    agent_daily_limit: int = Field(300, ge=0, le=1_000_000)
    agent_limits: dict[str, int] = {}

    @field_validator("countries")
    @classmethod
    def _countries(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        out = []
        for region in v:
            if region.upper() not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"unknown phone region {region!r} (ISO 3166 code like CN, US)")
            out.append(region.upper())
        return out

    @field_validator("types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        for name in v:
            if name.upper() not in NUMBER_TYPES:
                raise ValueError(f"unknown number type {name!r} (one of {sorted(NUMBER_TYPES)})")
        return [name.upper() for name in v]

    @field_validator("deny", "allow")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for pattern in v:
            if not _DIAL_PATTERN.fullmatch(pattern):
                raise ValueError(f"{pattern!r}: an E.164 prefix like +1900 (X: any digit)")
        return v

    @field_validator("agent_limits")
    @classmethod
    def _limits(cls, v: dict[str, int]) -> dict[str, int]:
        for agent, limit in v.items():
            if not 0 <= limit <= 1_000_000:
                raise ValueError(f"agent_limits.{agent}: 0 (no limit) to 1000000")
        return v


class DaemonConfig(_Section):
    #: ``cti run``'s CPU priority (Linux niceness, -20..19), set at start when the process
    #: may lower it (root, CAP_SYS_NICE; else systemd's ``Nice=``): the pops are made on
    #: one event-loop thread that Asterisk's threads would otherwise crowd out (cti.priority)
    nice: int = Field(-5, ge=-20, le=19)


class LogConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "text"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        # extra sections belong to features (cti.features.FeatureContext.section), which
        # validate them; sections no feature claims are refused at daemon start
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="allow",
        case_sensitive=False,
    )

    site: SiteConfig = SiteConfig()
    ami: AmiConfig = AmiConfig()
    asterisk: AsteriskConfig = AsteriskConfig()
    database: DatabaseConfig = DatabaseConfig()
    http: HttpConfig = HttpConfig()
    auth: AuthConfig = AuthConfig()
    agi: AgiConfig = AgiConfig()
    dial: DialConfig = DialConfig()
    log: LogConfig = LogConfig()
    daemon: DaemonConfig = DaemonConfig()
    cluster: ClusterConfig = ClusterConfig()

    @property
    def server_name(self) -> str:
        """The Asterisk server this node serves, as the cluster names it (its lease, its
        campaigns' locks, its phones' locations, its rows in the records tables): ``[cluster]
        server``, else the instance's name."""
        return self.cluster.server or self.asterisk.instance

    @property
    def node_name(self) -> str:
        """This node's name in a cluster (``[cluster] node``, else the host name); "" on a
        single node (no broker)."""
        if not self.cluster.broker_url:
            return ""
        return self.cluster.node or socket.gethostname()

    @model_validator(mode="after")
    def _ami_exposed(self) -> Settings:
        """AMI off loopback is never served or used with a default or weak secret."""
        hosts = (("asterisk.ami_bind", self.asterisk.ami_bind), ("ami.host", self.ami.host))
        exposed = [name for name, host in hosts if not _loopback(host)]
        if exposed and len(self.ami.secret) < MIN_EXPOSED_SECRET:
            raise ValueError(
                f"{exposed[0]} is not loopback: ami.secret must be set to a generated secret "
                f"of at least {MIN_EXPOSED_SECRET} characters (cti setup makes one)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # environment first: it overrides the file (passed in as init values)
        return (env_settings, init_settings)


def _where(loc: tuple[Any, ...], file_data: Mapping[str, Any], path: Path | None) -> str:
    env_name = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
    if env_name in {k.upper() for k in os.environ}:
        return f"from environment {env_name}"
    node: Any = file_data
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return "default" if path is None else f"in {path}"
        node = node[part]
    return f"in {path}" if path else "in configuration"


def load_config(path: Path | str | None) -> Settings:
    """Load and validate. ``path`` may be None (environment and defaults only)."""
    file_data: dict[str, Any] = {}
    p = Path(path) if path else None
    if p is not None:
        try:
            with p.open("rb") as fh:
                file_data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file not found: {p}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from exc
    try:
        return Settings(**file_data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(x) for x in loc)
            got = err.get("input")
            shown = (
                ""
                if isinstance(got, Mapping) or ("secret" in key or "password" in key)
                else f" (got {got!r})"
            )
            lines.append(f"  {key}: {err['msg']}{shown} [{_where(loc, file_data, p)}]")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (relative paths as given), else None."""
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix) :])
    return None
