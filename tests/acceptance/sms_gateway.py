"""Local stand-ins for Aliyun's and Tencent Cloud's SMS APIs (no tests here). Aliyun: an
HTTP server that checks each ``SendSms`` request as the published signature v1 specifies
— written from the spec, not from messaging.sms — and keeps what it accepted (Tencent:
:func:`tencent_gateway`, TC3-HMAC-SHA256, likewise not from messaging.tencent_sms).

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
import json
import re
import time
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
    failed: int = 0  # requests answered with fail_with
    undeliverable: set[str] = field(default_factory=set)  # numbers whose receipt is a failure


def _error(code: str, message: str, status: int = 400) -> web.Response:
    return web.json_response({"Code": code, "Message": message, "RequestId": "r"}, status=status)


@asynccontextmanager
async def sms_gateway() -> AsyncIterator[Gateway]:
    gw = Gateway("")

    async def handle(request: web.Request) -> web.Response:
        if gw.fail_with is not None:
            gw.failed += 1
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


# --- Tencent Cloud SMS (API 3.0, TC3-HMAC-SHA256) ------------------------------------------

TC_SECRET_ID = "AKID-test-secret-id"
TC_SECRET_KEY = "tc-test-secret-key"
TC_APP_ID = "1400006666"
TC_AUTH = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})"
)


def tc3_signature(
    secret_key: str,
    date: str,
    service: str,
    timestamp: str,
    headers: dict[str, str],
    signed: list[str],
    body: bytes,
) -> str:
    """TC3-HMAC-SHA256 from the "Signature v3" page, step by step: the canonical request
    (method, URI "/", empty query, the signed headers "name:value\\n" lower-cased and
    trimmed, their names joined by ";", the body's SHA-256), the string to sign, the
    derived key ("TC3" + key -> date -> service -> "tc3_request"), the hex HMAC."""
    canonical_headers = "".join(f"{h}:{headers[h].strip().lower()}\n" for h in signed)
    canonical_request = (
        "POST\n/\n\n" + canonical_headers + "\n" + ";".join(signed) + "\n"
        + hashlib.sha256(body).hexdigest()
    )  # fmt: skip
    string_to_sign = (
        f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n"
        + hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    )
    key = ("TC3" + secret_key).encode("utf-8")
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def _tc_error(code: str, message: str) -> web.Response:
    return web.json_response({"Response": {"Error": {"Code": code, "Message": message},
                                           "RequestId": "r"}})  # fmt: skip


@asynccontextmanager
async def tencent_gateway() -> AsyncIterator[Gateway]:
    """A local stand-in for Tencent Cloud SMS: checks every request as the TC3 spec says
    (Authorization's credential scope for service "sms" and the timestamp's UTC date,
    content-type and host among the signed headers, X-TC-Timestamp within 5 minutes,
    X-TC-Version 2021-01-11, X-TC-Region present, the signature) and keeps the SendSms
    bodies it accepted; receipts by PullSmsSendStatusByPhoneNumber."""
    gw = Gateway("")

    async def handle(request: web.Request) -> web.Response:
        if gw.fail_with is not None:
            return web.Response(status=gw.fail_with, text="down")
        body = await request.read()
        h = {k.lower(): v for k, v in request.headers.items()}
        auth = TC_AUTH.fullmatch(h.get("authorization", ""))
        if auth is None:
            gw.refused.append("authorization")
            return _tc_error("AuthFailure.InvalidAuthorization", "Authorization malformed")
        signed = auth["signed"].split(";")
        if "content-type" not in signed or "host" not in signed or signed != sorted(signed):
            return _tc_error("AuthFailure.InvalidAuthorization", "SignedHeaders")
        if auth["id"] != TC_SECRET_ID:
            gw.refused.append("key")
            return _tc_error("AuthFailure.SecretIdNotFound", "unknown SecretId")
        stamp = h.get("x-tc-timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
            return _tc_error("AuthFailure.SignatureExpire", "timestamp")
        if datetime.fromtimestamp(int(stamp), UTC).strftime("%Y-%m-%d") != auth["date"]:
            return _tc_error("AuthFailure.InvalidAuthorization", "credential date")
        if auth["service"] != "sms" or h.get("x-tc-version") != "2021-01-11":
            return _tc_error("AuthFailure.InvalidAuthorization", "service / version")
        if not h.get("x-tc-region"):
            return _tc_error("MissingParameter", "X-TC-Region")
        expected = tc3_signature(
            TC_SECRET_KEY, auth["date"], auth["service"], stamp, h, signed, body
        )
        if not hmac.compare_digest(expected, auth["sig"]):
            gw.refused.append("signature")
            return _tc_error("AuthFailure.SignatureFailure", "signature mismatch")
        data = json.loads(body)
        action = h.get("x-tc-action")
        if data.get("SmsSdkAppId") != TC_APP_ID:
            return _tc_error("InvalidParameterValue.SdkAppIdNotExist", "SmsSdkAppId")
        if action == "PullSmsSendStatusByPhoneNumber":
            failed = data["PhoneNumber"] in gw.undeliverable
            entries = [
                {
                    "SerialNo": f"serial-{i + 1}",
                    "PhoneNumber": data["PhoneNumber"],
                    "ReportStatus": "FAIL" if failed else "SUCCESS",
                    "Description": "MOBILE_NOT_ON_SERVICE" if failed else "DELIVRD",
                }
                for i, sent in enumerate(gw.accepted)
                if sent["PhoneNumberSet"] == [data["PhoneNumber"]]
            ]  # fmt: skip
            return web.json_response(
                {"Response": {"PullSmsSendStatusSet": entries, "RequestId": "r"}}
            )
        if action != "SendSms":
            return _tc_error("InvalidAction", "action")
        if not data.get("SignName") or not data.get("TemplateId"):
            return _tc_error("MissingParameter", "SignName / TemplateId")
        gw.accepted.append(data)
        status = {
            "SerialNo": f"serial-{len(gw.accepted)}",
            "PhoneNumber": data["PhoneNumberSet"][0],
            "Fee": 1,
            "SessionContext": "",
            "Code": "Ok",
            "Message": "send success",
            "IsoCode": "CN",
        }
        return web.json_response({"Response": {"SendStatusSet": [status], "RequestId": "r"}})

    app = web.Application()
    app.router.add_post("/", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    gw.url = f"http://127.0.0.1:{server.port}/"
    try:
        yield gw
    finally:
        await server.close()
