"""The ``[ivr]`` section of the daemon configuration."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["IvrConfig"]

# a dial template may hold only what a channel name needs, plus its one placeholder
_TEMPLATE = re.compile(r"[A-Za-z0-9/@_.:-]*\{(digits|e164|ext)\}[A-Za-z0-9/@_.:-]*")

# Playback / GET DATA / periodic-announce split on , & | and queues.conf reads ; as a
# comment: none of them (nor ? or white space) in the URL
_MEDIA_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*/?")


class IvrConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    menus: Path = Path("var/ivr/menus.toml")
    # where text prompts are written (host path) and the same directory as Asterisk sees it
    prompt_dir: Path = Path("var/ivr/prompts")
    prompt_dir_asterisk: str = "/var/lib/asterisk/sounds/cti"
    # Asterisk's sounds directory (<astdatadir>/sounds, host path): language sound files
    # other features need (zh/digits/5 for numbers said in Mandarin) go under it; None:
    # the parent of prompt_dir when Asterisk sees prompt_dir at the same path (no chroot),
    # else none (numbers stay in Asterisk's English)
    sounds_dir: Path | None = None
    # how Asterisk reaches this node's HTTP, e.g. "http://10.0.0.5:8080": rendered prompts
    # (menus, queue announcements, survey) are then played from there (ivr.media,
    # decision 0032) and Asterisk needs no view of prompt_dir; "auto" (the default): the
    # node's [http] host and port, or with host 0.0.0.0 its address on the route to
    # Asterisk (ivr.media.auto_base), by path when prompt_dir_asterisk is set or no
    # address can be told; "": by path under prompt_dir_asterisk
    media_url: str = "auto"
    # the media URLs' signing secret, the same on the nodes that may drive a server;
    # "": derived from ami.secret, else random per process
    media_secret: str = Field("", repr=False)
    # Dial() strings: external numbers ({digits} = E.164 without "+", {e164}) and extensions
    forward_dial: str = "PJSIP/{digits}@trunk"
    extension_dial: str = "PJSIP/{ext}"
    voicemail_context: str = "default"
    # a fixed "now" (ISO 8601 with offset) for tests and demos; None = the real clock
    now_override: datetime | None = None
    lookup_timeout_s: float = Field(1.5, gt=0, le=10)

    @field_validator("forward_dial")
    @classmethod
    def _forward(cls, v: str) -> str:
        if _TEMPLATE.fullmatch(v) is None or "{ext}" in v:
            raise ValueError("a channel like PJSIP/{digits}@trunk ({digits} or {e164} once)")
        return v

    @field_validator("extension_dial")
    @classmethod
    def _ext(cls, v: str) -> str:
        if _TEMPLATE.fullmatch(v) is None or "{ext}" not in v:
            raise ValueError("a channel like PJSIP/{ext} ({ext} once)")
        return v

    @field_validator("voicemail_context")
    @classmethod
    def _vm(cls, v: str) -> str:
        if re.fullmatch(r"[A-Za-z0-9_-]{1,40}", v) is None:
            raise ValueError("a voicemail context name")
        return v

    @field_validator("now_override")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("now_override needs a UTC offset, e.g. 2026-10-01T10:00:00+08:00")
        return v

    @field_validator("media_url")
    @classmethod
    def _media(cls, v: str) -> str:
        if v in ("", "auto"):
            return v
        if _MEDIA_URL.fullmatch(v) is None:
            raise ValueError(
                "an http(s) URL without query, like http://10.0.0.5:8080 (or auto, or empty)"
            )
        return v.rstrip("/")

    @field_validator("prompt_dir_asterisk")
    @classmethod
    def _adir(cls, v: str) -> str:
        if re.fullmatch(r"/[A-Za-z0-9_./-]+", v) is None or ".." in v:
            raise ValueError("an absolute path of letters, digits, _ . / -")
        return v
