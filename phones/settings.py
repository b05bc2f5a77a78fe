"""The ``[phones]`` configuration section."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cti.config import networks

__all__ = ["PhonesSettings"]

_WS_URL = re.compile(r"wss?://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?(/[A-Za-z0-9/_.-]*)?")
_REALM = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")


class PhonesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # the SIP digest realm of new phones (a SIP phone keeps the realm its stored hash was
    # made with until its credentials are rotated)
    realm: str = "cti"
    # the key browser phones' passwords are derived from (HMAC); empty: derived from
    # ami.secret. Changing it changes every browser phone's password at the next start
    # (the desktops get the new one at sign-in; nothing to do by hand)
    secret: str = Field("", repr=False)
    # the WebSocket URL browsers reach Asterisk's SIP-over-WebSocket at, e.g.
    # wss://pbx.example.com/ws behind a TLS proxy. Empty: ws://<the host the page was
    # loaded from>:<bindport of the instance's http.conf>/ws
    ws_url: str = ""
    # the SIP domain shown to people setting a phone up; empty: the host the page was
    # loaded from
    domain: str = ""
    # most phones an agent may have
    max_per_agent: int = Field(4, ge=1, le=20)
    # an address with this many wrong SIP credentials within block_window_s is refused
    # everything (PJSIP ACL) for block_s; 0: never block (docs/decisions/0022)
    block_failures: int = Field(5, ge=0, le=10_000)
    block_window_s: float = Field(60.0, gt=0, le=86_400)
    block_s: float = Field(600.0, gt=0, le=30 * 86_400)
    # networks never blocked (the carrier, a SIP proxy in front), CIDR
    never_block: list[str] = ["127.0.0.1/32", "::1/128"]

    @field_validator("never_block")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        networks(v, "203.0.113.0/24")
        return v

    @field_validator("realm")
    @classmethod
    def _realm(cls, v: str) -> str:
        if not _REALM.fullmatch(v):
            raise ValueError("a realm is 1-63 of A-Z a-z 0-9 . - (like cti or pbx.example.com)")
        return v

    @field_validator("ws_url")
    @classmethod
    def _ws(cls, v: str) -> str:
        if v and not _WS_URL.fullmatch(v):
            raise ValueError("a ws:// or wss:// URL like wss://pbx.example.com/ws")
        return v

    @field_validator("domain", "secret")
    @classmethod
    def _line(cls, v: str) -> str:
        if any(c in v for c in "\r\n\0 \t;[]"):
            raise ValueError("must be one word (no spaces, CR, LF, ; or brackets)")
        return v
