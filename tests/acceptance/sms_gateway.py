"""A local stand-in for Aliyun's SMS API (no tests here): an HTTP server that checks each
``SendSms`` request as the published signature v1 specifies — written from the spec, not
from messaging.sms — and keeps what it accepted.

Checks: every common parameter present, ``SignatureMethod`` HMAC-SHA1 and
``SignatureVersion`` 1.0, a ``Timestamp`` within 15 minutes, a ``SignatureNonce`` never
seen before, a known ``AccessKeyId``, and ``Signature`` equal to
Base64(HMAC-SHA1(secret + "&", "POST&%2F&" + pct(sorted "k=v" pairs joined by "&"))),
where pct is RFC 3986 (Java's URLEncoder output with "+"->"%20", "*"->"%2A", "%7E"->"~",
as Aliyun's own sample code does it)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from aiohttp import web
from aiohttp.test_utils import TestServer

KEY_ID = "LTAI-test-key-id"
SECRET = "test-secret-of-the-gateway"
COMMON = (
    "AccessKeyId",
    "Action",
    "Format",
    "RegionId",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "Timestamp",
    "Version",
)


def _pct(text: str) -> str:
    return quote_plus(text, safe="").replace("+", "%20").replace("*", "%2A").replace("%7E", "~")


def expected_signature(form: dict[str, str], secret: str) -> str:
    pairs = sorted((k, v) for k, v in form.items() if k != "Signature")
    canonical = "&".join(_pct(k) + "=" + _pct(v) for k, v in pairs)
    string_to_sign = "POST&" + _pct("/") + "&" + _pct(canonical)
    mac = hmac.new(f"{secret}&".encode(), string_to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


@dataclass
class Gateway:
    url: str
    accepted: list[dict[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    nonces: set[str] = field(default_factory=set)
    fail_with: int | None = None  # answer this HTTP status to everything
    undeliverable: set[str] = field(default_factory=set)  # numbers whose receipt is a failure


def _error(code: str, message: str, status: int = 400) -> web.Response:
    return web.json_response({"Code": code, "Message": message, "RequestId": "r"}, status=status)


@asynccontextmanager
async def sms_gateway() -> AsyncIterator[Gateway]:
    gw = Gateway("")

    async def handle(request: web.Request) -> web.Response:
        if gw.fail_with is not None:
            return web.Response(status=gw.fail_with, text="down")
        form: dict[str, Any] = dict(await request.post())
        action = form.get("Action")
        own = (
            ("PhoneNumbers", "SignName", "TemplateCode")
            if action == "SendSms"
            else ("PhoneNumber", "BizId", "SendDate", "PageSize", "CurrentPage")
        )
        missing = [k for k in (*COMMON, "Signature", *own) if not form.get(k)]
        if missing:
            gw.refused.append("missing " + ",".join(missing))
            return _error("MissingParameter", ",".join(missing))
        if form["SignatureMethod"] != "HMAC-SHA1" or form["SignatureVersion"] != "1.0":
            return _error("InvalidSignatureMethod", "HMAC-SHA1 1.0 only")
        if form["AccessKeyId"] != KEY_ID:
            gw.refused.append("key")
            return _error("InvalidAccessKeyId.NotFound", "unknown key", 404)
        at = datetime.strptime(form["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if abs((datetime.now(UTC) - at).total_seconds()) > 900:
            return _error("InvalidTimeStamp.Expired", "timestamp")
        if form["SignatureNonce"] in gw.nonces:
            return _error("SignatureNonceUsed", "nonce")
        if not hmac.compare_digest(form["Signature"], expected_signature(form, SECRET)):
            gw.refused.append("signature")
            return _error("SignatureDoesNotMatch", "Specified signature is not matched")
        gw.nonces.add(form["SignatureNonce"])
        if action == "QuerySendDetails":
            sent = [f for f in gw.accepted if f"biz{gw.accepted.index(f) + 1}" == form["BizId"]]
            if not sent or sent[0]["PhoneNumbers"] != form["PhoneNumber"]:
                return web.json_response({"Code": "OK", "TotalCount": 0, "SmsSendDetailDTOs": {}})
            failed = form["PhoneNumber"] in gw.undeliverable
            detail = {
                "PhoneNum": form["PhoneNumber"],
                "SendStatus": 2 if failed else 3,
                "ErrCode": "MOBILE_NOT_ON_SERVICE" if failed else "DELIVERED",
            }
            return web.json_response(
                {"Code": "OK", "TotalCount": 1, "SmsSendDetailDTOs": {"SmsSendDetailDTO": [detail]}}
            )
        if action != "SendSms":
            return _error("InvalidAction.NotFound", "action")
        gw.accepted.append(form)
        return web.json_response(
            {"Code": "OK", "Message": "OK", "BizId": f"biz{len(gw.accepted)}", "RequestId": "r"}
        )

    app = web.Application()
    app.router.add_post("/", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    gw.url = f"http://127.0.0.1:{server.port}/"
    try:
        yield gw
    finally:
        await server.close()
