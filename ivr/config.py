"""The ``[ivr]`` section of the daemon configuration."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["IvrConfig"]

# a dial template may hold only what a channel name needs, plus its one placeholder
_TEMPLATE = re.compile(r"[A-Za-z0-9/@_.:-]*\{(digits|e164|ext)\}[A-Za-z0-9/@_.:-]*")


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

    @field_validator("prompt_dir_asterisk")
    @classmethod
    def _adir(cls, v: str) -> str:
        if re.fullmatch(r"/[A-Za-z0-9_./-]+", v) is None or ".." in v:
            raise ValueError("an absolute path of letters, digits, _ . / -")
        return v
