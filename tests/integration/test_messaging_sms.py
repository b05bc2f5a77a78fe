"""The Aliyun and Tencent Cloud SMS adapters against local servers that verify every
request's signature as the providers' published specifications say (Aliyun's signature
v1, Tencent's TC3-HMAC-SHA256: tests/acceptance/sms_gateway.py), each signature also
against its specification's worked example."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from pydantic import HttpUrl

from cti.store.db import Database
from messaging.config import AliyunSmsConfig, TencentSmsConfig
from messaging.feature import MessagingFeature
from messaging.sms import AliyunSms, SmsError, aliyun_signature
from messaging.templates import fields_of, render
from messaging.tencent_sms import TencentSms, tc3_authorization
from tests.acceptance.sms_gateway import (
    KEY_ID,
    SECRET,
    TC_APP_ID,
    TC_SECRET_ID,
    TC_SECRET_KEY,
    expected_signature,
    sms_gateway,
    tc3_signature,
    tencent_gateway,
)
from tests.integration.test_crm_harness import crm_server


def _config(url: str, secret: str = SECRET) -> AliyunSmsConfig:
    return AliyunSmsConfig(
        endpoint=HttpUrl(url), access_key_id=KEY_ID, access_key_secret=secret, sign_name="测试客服"
    )


def test_signature_matches_the_specs_worked_example() -> None:
    """Aliyun's documentation example (RPC signature, GET, secret "testsecret")."""
    params = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert aliyun_signature("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


async def test_send_accepted_with_chinese_text_and_refused_with_a_wrong_secret() -> None:
    async with sms_gateway() as gw:
        sms = AliyunSms(_config(gw.url))
        try:
            res = await sms.send(
                "+8613800138000",
                "您好 王小明",
                template="SMS_123",
                params={"name": "王小明 & co*~"},
            )
            assert res.accepted and res.provider_id == "biz1", res
            form = gw.accepted[0]
            assert form["PhoneNumbers"] == "13800138000" and form["SignName"] == "测试客服"
            assert json.loads(form["TemplateParam"]) == {"name": "王小明 & co*~"}
            assert form["Signature"] == expected_signature(form, SECRET)
            res = await sms.send("+8613800138000", "x", template="", params={})
            assert not res.accepted and "template code" in res.error
            # delivery receipts (QuerySendDetails, signed the same way)
            now = datetime.now(UTC)
            assert await sms.receipt("biz1", "+8613800138000", now) == "delivered"
            gw.undeliverable.add("13800138000")
            assert await sms.receipt("biz1", "+8613800138000", now) == (
                "failed: MOBILE_NOT_ON_SERVICE"
            )
            assert await sms.receipt("biz9", "+8613800138000", now) is None  # not known yet
        finally:
            await sms.close()
        wrong = AliyunSms(_config(gw.url, "not-the-secret"))
        try:
            res = await wrong.send("+8613800138000", "x", template="SMS_1", params={})
            assert not res.accepted and res.error.startswith("SignatureDoesNotMatch")
            gw.fail_with = 503
            with pytest.raises(SmsError):
                await wrong.send("+8613800138000", "x", template="SMS_1", params={})
        finally:
            await wrong.close()
        assert gw.refused == ["signature"]


def test_template_fields() -> None:
    text = "您好 {name},{agent} 将回电。{{不是字段}} {unknown}"
    assert fields_of(text) == ["name", "agent", "unknown"]
    assert render(text, {"name": "<b>王</b>\r\nBcc: x", "agent": "1001"}) == (
        "您好 <b>王</b>\r\nBcc: x,1001 将回电。{不是字段} {unknown}"
    )


# --- Tencent Cloud SMS (TC3-HMAC-SHA256) --------------------------------------------------

#: the worked example of Tencent Cloud's "Signature v3" page (CVM DescribeInstances; the
#: page masks the key with "*", and its published signature is of the masked key)
SPEC_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******"
SPEC_KEY = "Gu5t9xGARNpq86cd98joQYCN3*******"
SPEC_PAYLOAD = (
    '{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
)
SPEC_SIGNATURE = "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"


def test_tc3_signature_matches_the_specs_worked_example() -> None:
    """Both implementations (the adapter's and the test gateway's, written apart) give
    the page's signature and Authorization for its example."""
    assert hashlib.sha256(SPEC_PAYLOAD.encode()).hexdigest() == (
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    assert tc3_authorization(
        secret_id=SPEC_ID,
        secret_key=SPEC_KEY,
        service="cvm",
        host="cvm.tencentcloudapi.com",
        payload=SPEC_PAYLOAD,
        timestamp=1551113065,
    ) == (
        f"TC3-HMAC-SHA256 Credential={SPEC_ID}/2019-02-25/cvm/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={SPEC_SIGNATURE}"
    )
    headers = {"content-type": "application/json; charset=utf-8",
               "host": "cvm.tencentcloudapi.com"}  # fmt: skip
    assert tc3_signature(
        SPEC_KEY, "2019-02-25", "cvm", "1551113065", headers, ["content-type", "host"],
        SPEC_PAYLOAD.encode(),
    ) == SPEC_SIGNATURE  # fmt: skip


def _tencent(url: str, key: str = TC_SECRET_KEY) -> TencentSmsConfig:
    return TencentSmsConfig(
        endpoint=HttpUrl(url),
        secret_id=TC_SECRET_ID,
        secret_key=key,
        sms_sdk_app_id=TC_APP_ID,
        sign_name="测试客服",
    )


async def test_tencent_send_receipts_and_refusals() -> None:
    async with tencent_gateway() as gw:
        sms = TencentSms(_tencent(gw.url))
        try:
            res = await sms.send(
                "+8613800138000", "您好 王小明", template="1110",
                params={"name": "王小明 & co*~", "agent": "1001"},
            )  # fmt: skip
            assert res.accepted and res.provider_id == "serial-1", res
            assert gw.accepted[0]["PhoneNumberSet"] == ["+8613800138000"]
            assert gw.accepted[0]["TemplateParamSet"] == ["王小明 & co*~", "1001"]
            assert gw.accepted[0]["SignName"] == "测试客服"
            res = await sms.send("+8613800138000", "x", template="", params={})
            assert not res.accepted and "template id" in res.error
            now = datetime.now(UTC)
            assert await sms.receipt("serial-1", "+8613800138000", now) == "delivered"
            gw.undeliverable.add("+8613800138000")
            assert await sms.receipt("serial-1", "+8613800138000", now) == (
                "failed: MOBILE_NOT_ON_SERVICE"
            )
            assert await sms.receipt("serial-9", "+8613800138000", now) is None
        finally:
            await sms.close()
        wrong = TencentSms(_tencent(gw.url, "not-the-key"))
        try:
            res = await wrong.send("+8613800138000", "x", template="1110", params={})
            assert not res.accepted and res.error.startswith("AuthFailure.SignatureFailure")
            gw.fail_with = 503
            with pytest.raises(SmsError):
                await wrong.send("+8613800138000", "x", template="1110", params={})
        finally:
            await wrong.close()
        assert gw.refused == ["signature"]


async def test_tencent_chosen_by_config_with_status_on_the_timeline(db: Database) -> None:
    """``provider = "tencent"``: a template sent from the API reaches the gateway with its
    fields in order of use, and the message's status on the customer's timeline goes
    sent -> delivered with the gateway's receipt."""
    async with tencent_gateway() as gw:
        messaging = MessagingFeature()
        sections = {"messaging": {"sms": {"provider": "tencent", "tencent": {
            "endpoint": gw.url, "secret_id": TC_SECRET_ID, "secret_key": TC_SECRET_KEY,
            "sms_sdk_app_id": TC_APP_ID, "sign_name": "测试客服"}}}}  # fmt: skip
        async with crm_server(db, sections=sections, features=[messaging]) as crm:
            status, customer = await crm.call(
                "sup", "POST", "/api/v1/customers",
                json={"name": "王小明 <b>", "phones": ["13800138000"], "company": "ACME"},
            )  # fmt: skip
            assert status == 201, customer
            status, template = await crm.call(
                "sup", "POST", "/api/v1/message-templates",
                json={"name": "callback", "channel": "sms", "provider_template": "1110",
                      "body": "{agent} 将回电 {name} @ {company}"},
            )  # fmt: skip
            assert status == 201, template
            status, sent = await crm.call(
                "sup", "POST", "/api/v1/messages",
                json={"customer_id": customer["id"], "template_id": template["id"]},
            )  # fmt: skip
            assert status == 201 and sent["status"] == "queued", sent
            assert messaging.messenger is not None
            await messaging.messenger.flush()
            assert gw.accepted[0]["TemplateParamSet"] == ["sup", "王小明 <b>", "ACME"]
            timeline = f"/api/v1/messages?customer_id={customer['id']}"
            [row] = (await crm.call("sup", "GET", timeline))[1]["messages"]
            assert (row["status"], row["provider_id"]) == ("sent", "serial-1"), row
            assert row["body"] == "sup 将回电 王小明 <b> @ ACME"
            assert await messaging.messenger.poll_receipts() == 1
            [row] = (await crm.call("sup", "GET", timeline))[1]["messages"]
            assert row["status"] == "delivered"
