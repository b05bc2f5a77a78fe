"""SMS through a provider interface, and the adapter for Aliyun SMS (阿里云短信服务).

**Adding a provider**: implement :class:`SmsProvider` (one coroutine, ``send``): given the
E.164 number, the rendered text, the gateway's approved template code and the template's
field values, return :class:`SmsResult` (accepted with the gateway's id, or refused with
its reason) and raise :class:`SmsError` only when it is worth retrying (network, 5xx).
Chinese gateways deliver only approved templates with a signature: the text is what the
timeline shows, the template code and values are what the gateway sends.

**Aliyun** (``SendSms``, API version 2017-05-25, RPC style): the request's parameters
(common: ``AccessKeyId``, ``Action``, ``Format``, ``RegionId``, ``SignatureMethod``
HMAC-SHA1, ``SignatureNonce``, ``SignatureVersion`` 1.0, ``Timestamp`` ISO 8601 UTC,
``Version``; the action's: ``PhoneNumbers``, ``SignName``, ``TemplateCode``,
``TemplateParam`` JSON) are percent-encoded (RFC 3986: only ``A-Za-z0-9-_.~`` stay),
sorted by name and joined as ``k=v&…``; the string to sign is
``POST&%2F&`` + the encoded joined string; ``Signature`` = Base64(HMAC-SHA1(secret + "&",
string to sign)). The answer is JSON: ``Code`` "OK" with a ``BizId``, or an error code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

import aiohttp

from messaging.config import AliyunSmsConfig

CHINA = timezone(timedelta(hours=8))  # Aliyun's SendDate is a day in China time

__all__ = [
    "AliyunSms",
    "SmsError",
    "SmsProvider",
    "SmsReceipts",
    "SmsResult",
    "aliyun_signature",
    "percent",
]


@dataclass(frozen=True, slots=True)
class SmsResult:
    accepted: bool
    provider_id: str = ""
    error: str = ""


class SmsError(Exception):
    """A failure worth retrying (the gateway could not be reached, or answered 5xx)."""


class SmsProvider(Protocol):
    name: str

    async def send(
        self, to: str, text: str, *, template: str, params: Mapping[str, str]
    ) -> SmsResult: ...


@runtime_checkable
class SmsReceipts(Protocol):
    """A provider that can tell whether a sent SMS reached the handset: "delivered",
    "failed: <reason>", or None while the gateway does not know yet."""

    async def receipt(self, provider_id: str, to: str, sent_at: datetime) -> str | None: ...


def percent(value: str) -> str:
    """RFC 3986 percent-encoding of UTF-8 (what Aliyun's signature v1 specifies)."""
    return quote(value, safe="-_.~")


def aliyun_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    canonical = "&".join(f"{percent(k)}={percent(params[k])}" for k in sorted(params))
    to_sign = f"{method}&{percent('/')}&{percent(canonical)}"
    digest = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class AliyunSms:
    name = "aliyun"

    def __init__(self, config: AliyunSmsConfig) -> None:
        self.config = config
        self._http: aiohttp.ClientSession | None = None

    def _form(self, action: str, params: Mapping[str, str]) -> dict[str, str]:
        """The form of one request: common parameters, ``params``, signed."""
        form = {
            "AccessKeyId": self.config.access_key_id,
            "Action": action,
            "Format": "JSON",
            "RegionId": self.config.region_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": secrets.token_hex(16),
            "SignatureVersion": "1.0",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
            **params,
        }
        form["Signature"] = aliyun_signature("POST", form, self.config.access_key_secret)
        return form

    @staticmethod
    def _national(to: str) -> str:
        return to[3:] if to.startswith("+86") else to.lstrip("+")

    def signed(self, to: str, template: str, params: Mapping[str, str]) -> dict[str, str]:
        """The form of one SendSms request, signed."""
        return self._form(
            "SendSms",
            {
                "PhoneNumbers": self._national(to),
                "SignName": self.config.sign_name,
                "TemplateCode": template,
                "TemplateParam": json.dumps(dict(params), ensure_ascii=False),
            },
        )

    async def _post(self, form: dict[str, str]) -> Any:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)
            )
        try:
            async with self._http.post(str(self.config.endpoint), data=form) as resp:
                if resp.status >= 500:
                    raise SmsError(f"gateway answered {resp.status}")
                try:
                    return await resp.json(content_type=None)
                except ValueError:
                    return {"Code": str(resp.status), "Message": "not JSON"}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SmsError(f"gateway unreachable: {type(exc).__name__}") from exc

    async def receipt(self, provider_id: str, to: str, sent_at: datetime) -> str | None:
        """QuerySendDetails for the message: ``SendStatus`` 3 delivered, 2 failed (with
        its ``ErrCode``), 1 waiting for the handset's receipt (None)."""
        answer = await self._post(
            self._form(
                "QuerySendDetails",
                {
                    "PhoneNumber": self._national(to),
                    "BizId": provider_id,
                    "SendDate": sent_at.astimezone(CHINA).strftime("%Y%m%d"),
                    "PageSize": "10",
                    "CurrentPage": "1",
                },
            )
        )
        if not isinstance(answer, dict) or answer.get("Code") != "OK":
            return None
        details = (answer.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
        if not details:
            return None
        status = details[0].get("SendStatus")
        if status == 3:
            return "delivered"
        if status == 2:
            return f"failed: {details[0].get('ErrCode', '')}"[:1024]
        return None

    async def send(
        self, to: str, text: str, *, template: str, params: Mapping[str, str]
    ) -> SmsResult:
        if not template:
            return SmsResult(False, error="the template has no Aliyun template code")
        answer = await self._post(self.signed(to, template, params))
        if not isinstance(answer, dict):
            return SmsResult(False, error="gateway answered no JSON object")
        if answer.get("Code") == "OK":
            return SmsResult(True, provider_id=str(answer.get("BizId", ""))[:128])
        return SmsResult(
            False, error=f"{answer.get('Code', '')}: {answer.get('Message', '')}"[:1024]
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
