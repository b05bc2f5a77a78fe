"""The ``[messaging]`` configuration section (docs/messaging.md)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator


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


class TencentSmsConfig(BaseModel):
    """Tencent Cloud SMS (腾讯云短信), API 3.0 SendSms 2021-01-11 (TC3-HMAC-SHA256)."""

    model_config = ConfigDict(extra="forbid")

    endpoint: HttpUrl = HttpUrl("https://sms.tencentcloudapi.com/")
    secret_id: str = ""
    secret_key: str = Field("", repr=False)
    sms_sdk_app_id: str = ""  # the SMS application's SdkAppId, e.g. "1400006666"
    sign_name: str = ""  # the approved signature (签名)
    region: str = "ap-guangzhou"
    timeout_s: float = Field(10.0, gt=0, le=120)


class SmsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: Literal["none", "aliyun", "tencent"] = "none"
    aliyun: AliyunSmsConfig = AliyunSmsConfig()
    tencent: TencentSmsConfig = TencentSmsConfig()


class MissedCallRule(BaseModel):
    """An SMS to a caller whose call was abandoned in a queue or reached the closed IVR."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    template: str = "missed_call"  # a template's name (an SMS template)
    on_abandoned: bool = True
    on_after_hours: bool = True
    min_wait_s: float = Field(0.0, ge=0)  # abandons shorter than this send nothing
    per_number_cooldown_s: float = Field(3600.0, ge=0)  # at most one per number in this time


class DigestConfig(BaseModel):
    """The daily digest e-mail of each agent's reminders (messaging.digest)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    at: str = "08:00"  # local time (HH:MM in ``[site] timezone``) from which it is sent
    # where the links to the customer pages point: "" = the first [http] public_urls
    base_url: str = ""
    subject: str = "今日提醒 / Today's reminders"
    check_interval_s: float = Field(60.0, gt=0, le=3600)  # how often the time is checked
    send_empty: bool = False  # also mail a digest with nothing in it

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        m = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", v)
        if m is None:
            raise ValueError(f"not a time of day HH:MM {v!r}")
        return v

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        if v and not re.fullmatch(r"https?://[^\s\"'<>]+", v):
            raise ValueError(f"not an http(s) URL {v!r}")
        return v.rstrip("/")


class ImapConfig(BaseModel):
    """A mailbox polled for customers' replies (messaging.imap); off without ``host``."""

    model_config = ConfigDict(extra="forbid")

    host: str = ""
    port: int = Field(993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str = ""
    password: str = Field("", repr=False)
    mailbox: str = "INBOX"
    poll_s: float = Field(60.0, gt=0, le=86400)
    # a message larger than this is filed from its headers only (its body is not fetched)
    max_bytes: int = Field(1_000_000, ge=1024, le=50_000_000)
    batch: int = Field(100, ge=1, le=1000)  # at most this many messages per poll
    timeout_s: float = Field(30.0, gt=0, le=300)


class MessagingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    smtp: SmtpConfig = SmtpConfig()
    sms: SmsConfig = SmsConfig()
    missed_call: MissedCallRule = MissedCallRule()
    digest: DigestConfig = DigestConfig()
    imap: ImapConfig = ImapConfig()
    # mass sends go out at most this many a second, every node together (the rate is
    # shared in the store: messaging.throttle); single ones at once
    mass_per_second: float = Field(5.0, gt=0, le=1000)
    mass_max: int = Field(10_000, ge=1, le=1_000_000)
    # how often the SMS gateway is asked for delivery receipts of the last day's SMS
    receipt_poll_s: float = Field(60.0, gt=0)
    queue_size: int = Field(20_000, ge=1)  # unused since the outbox (kept for old configs)
    # the outbox: every node looks for queued messages this often (its own it sends at once)
    outbox_poll_s: float = Field(2.0, gt=0, le=60)
    # a message still "sending" after this (its node died) is sent by another node
    sending_stale_s: float = Field(120.0, gt=0, le=86400)
