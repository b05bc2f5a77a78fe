"""The Aliyun SMS adapter against a local server that verifies every request's signature
as Aliyun's published signature v1 specifies (tests/acceptance/sms_gateway.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import HttpUrl

from messaging.config import AliyunSmsConfig
from messaging.sms import AliyunSms, SmsError, aliyun_signature
from messaging.templates import fields_of, render
from tests.acceptance.sms_gateway import KEY_ID, SECRET, expected_signature, sms_gateway


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
