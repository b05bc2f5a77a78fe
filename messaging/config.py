"""The ``[messaging]`` configuration section (docs/messaging.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl


class SmtpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = ""  # "": e-mail is off
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: str = Field("", repr=False)
    sender: str = ""  # From: address, e.g. "Service <service@example.cn>"
    timeout_s: float = Field(10.0, gt=0, le=120)


class AliyunSmsConfig(BaseModel):
    """Aliyun (阿里云) Short Message Service, SendSms over its RPC API (signature v1)."""

    model_config = ConfigDict(extra="forbid")

    endpoint: HttpUrl = HttpUrl("https://dysmsapi.aliyuncs.com/")
    access_key_id: str = ""
    access_key_secret: str = Field("", repr=False)
    sign_name: str = ""  # the approved signature (签名), e.g. "某某客服"
    region_id: str = "cn-hangzhou"
    timeout_s: float = Field(10.0, gt=0, le=120)


class SmsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["none", "aliyun"] = "none"
    aliyun: AliyunSmsConfig = AliyunSmsConfig()


class MissedCallRule(BaseModel):
    """An SMS to a caller whose call was abandoned in a queue or reached the closed IVR."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    template: str = "missed_call"  # a template's name (an SMS template)
    on_abandoned: bool = True
    on_after_hours: bool = True
    min_wait_s: float = Field(0.0, ge=0)  # abandons shorter than this send nothing
    per_number_cooldown_s: float = Field(3600.0, ge=0)  # at most one per number in this time


class MessagingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    smtp: SmtpConfig = SmtpConfig()
    sms: SmsConfig = SmsConfig()
    missed_call: MissedCallRule = MissedCallRule()
    # mass sends go out at most this many a second (per channel); single ones at once
    mass_per_second: float = Field(5.0, gt=0, le=1000)
    mass_max: int = Field(10_000, ge=1, le=1_000_000)
    # how often the SMS gateway is asked for delivery receipts of the last day's SMS
    receipt_poll_s: float = Field(60.0, gt=0)
    queue_size: int = Field(20_000, ge=1)
