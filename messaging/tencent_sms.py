"""Tencent Cloud SMS (腾讯云短信), API 3.0: ``SendSms`` and ``PullSmsSendStatusByPhoneNumber``
(version 2021-01-11), signed with TC3-HMAC-SHA256 as the published "Signature v3"
specifies (https://cloud.tencent.com/document/api/382/52072).

The request is a POST of a JSON body to the endpoint's ``/`` with the headers
``Content-Type: application/json; charset=utf-8``, ``Host``, ``X-TC-Action``,
``X-TC-Timestamp`` (Unix seconds), ``X-TC-Version``, ``X-TC-Region`` and
``Authorization``. Signing:

1. canonical request = ``POST\\n/\\n\\n`` + ``content-type:<value>\\nhost:<value>\\n`` +
   ``\\ncontent-type;host\\n`` + lowercase hex SHA-256 of the body;
2. string to sign = ``TC3-HMAC-SHA256\\n<timestamp>\\n<date>/sms/tc3_request\\n`` + hex
   SHA-256 of the canonical request, ``date`` the UTC day of the timestamp (YYYY-MM-DD);
3. key = HMAC-SHA256(HMAC-SHA256(HMAC-SHA256("TC3" + SecretKey, date), "sms"),
   "tc3_request"); signature = hex HMAC-SHA256(key, string to sign);
4. ``Authorization: TC3-HMAC-SHA256 Credential=<SecretId>/<date>/sms/tc3_request,
   SignedHeaders=content-type;host, Signature=<signature>``.

Template values are positional on Tencent (``{1}``, ``{2}``…): ``TemplateParamSet`` is
the values of the template's fields in their order of first use in the body (the order
:class:`messaging.service.Messenger` passes them). The answer's ``SendStatusSet[0]``
``Code`` "Ok" means accepted (its ``SerialNo`` is the id asked about for the receipt);
anything else, or ``Response.Error``, is a refusal with its code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from messaging.config import TencentSmsConfig
from messaging.sms import SmsError, SmsResult

__all__ = ["VERSION", "TencentSms", "tc3_authorization"]

VERSION = "2021-01-11"
SERVICE = "sms"
CONTENT_TYPE = "application/json; charset=utf-8"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def tc3_authorization(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    host: str,
    payload: str,
    timestamp: int,
    content_type: str = CONTENT_TYPE,
) -> str:
    """The ``Authorization`` header of a POST of ``payload`` (signed headers: content-type
    and host)."""
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(
        (
            "POST",
            "/",
            "",
            f"content-type:{content_type}\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(payload.encode()).hexdigest(),
        )
    )
    scope = f"{day}/{service}/tc3_request"
    to_sign = "\n".join(
        (
            "TC3-HMAC-SHA256",
            str(timestamp),
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        )
    )
    key = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), day), service), "tc3_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
        f"SignedHeaders=content-type;host, Signature={signature}"
    )


class TencentSms:
    name = "tencent"

    def __init__(self, config: TencentSmsConfig) -> None:
        self.config = config
        self._http: aiohttp.ClientSession | None = None

    @property
    def host(self) -> str:
        """The Host header (and the signed host): the endpoint's host[:port]."""
        url = self.config.endpoint
        default = 443 if url.scheme == "https" else 80
        host = url.host or ""
        return host if url.port in (None, default) else f"{host}:{url.port}"

    def signed(self, action: str, body: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
        """The payload and headers of one request, signed now."""
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        now = int(time.time())
        c = self.config
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": self.host,
            "X-TC-Action": action,
            "X-TC-Timestamp": str(now),
            "X-TC-Version": VERSION,
            "X-TC-Region": c.region,
            "Authorization": tc3_authorization(
                secret_id=c.secret_id,
                secret_key=c.secret_key,
                service=SERVICE,
                host=self.host,
                payload=payload,
                timestamp=now,
            ),
        }
        return payload, headers

    async def _post(self, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``Response`` of the answer; raises :class:`SmsError` when worth retrying."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s)
            )
        payload, headers = self.signed(action, body)
        try:
            async with self._http.post(
                str(self.config.endpoint), data=payload.encode(), headers=headers
            ) as resp:
                if resp.status >= 500:
                    raise SmsError(f"gateway answered {resp.status}")
                try:
                    answer = await resp.json(content_type=None)
                except ValueError:
                    answer = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SmsError(f"gateway unreachable: {type(exc).__name__}") from exc
        response = answer.get("Response") if isinstance(answer, dict) else None
        if not isinstance(response, dict):
            return {"Error": {"Code": f"HTTP{resp.status}", "Message": "not an API answer"}}
        return response

    @staticmethod
    def _error(response: Mapping[str, Any]) -> str | None:
        error = response.get("Error")
        if isinstance(error, dict):
            return f"{error.get('Code', '')}: {error.get('Message', '')}"[:1024]
        return None

    async def send(
        self, to: str, text: str, *, template: str, params: Mapping[str, str]
    ) -> SmsResult:
        if not template:
            return SmsResult(False, error="the template has no Tencent template id")
        c = self.config
        response = await self._post(
            "SendSms",
            {
                "PhoneNumberSet": [to],
                "SmsSdkAppId": c.sms_sdk_app_id,
                "SignName": c.sign_name,
                "TemplateId": template,
                "TemplateParamSet": [str(v) for v in params.values()],
            },
        )
        error = self._error(response)
        if error is not None:
            return SmsResult(False, error=error)
        statuses = response.get("SendStatusSet") or []
        if not statuses or not isinstance(statuses[0], dict):
            return SmsResult(False, error="gateway answered no SendStatusSet")
        status = statuses[0]
        if str(status.get("Code", "")).lower() == "ok":
            return SmsResult(True, provider_id=str(status.get("SerialNo", ""))[:128])
        return SmsResult(
            False, error=f"{status.get('Code', '')}: {status.get('Message', '')}"[:1024]
        )

    async def receipt(self, provider_id: str, to: str, sent_at: datetime) -> str | None:
        """PullSmsSendStatusByPhoneNumber from a minute before the send: the entry with
        this ``SerialNo``; ``ReportStatus`` SUCCESS delivered, FAIL failed (with its
        ``Description``), none yet: None."""
        begin = int((sent_at - timedelta(minutes=1)).timestamp())
        response = await self._post(
            "PullSmsSendStatusByPhoneNumber",
            {
                "BeginTime": begin,
                "EndTime": begin + 7 * 24 * 3600,
                "Offset": 0,
                "Limit": 100,
                "PhoneNumber": to,
                "SmsSdkAppId": self.config.sms_sdk_app_id,
            },
        )
        if self._error(response) is not None:
            return None
        for entry in response.get("PullSmsSendStatusSet") or []:
            if not isinstance(entry, dict) or entry.get("SerialNo") != provider_id:
                continue
            if entry.get("ReportStatus") == "SUCCESS":
                return "delivered"
            if entry.get("ReportStatus") == "FAIL":
                return f"failed: {entry.get('Description', '')}"[:1024]
        return None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
