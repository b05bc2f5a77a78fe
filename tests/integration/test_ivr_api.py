"""The IVR's console API (SQLite and PostgreSQL): admins edit menus, prompts, hours and
numbers; every change is validated whole and refused with named problems (never a
500); supervisors read and flip overrides; uploaded audio must be real."""

from __future__ import annotations

import math
import struct
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from cti.store.db import Database
from cti.store.tokens import create_token
from cti.web.app import WebDeps, create_app
from cti.web.ws import WsHub
from ivr.api import IvrApi
from ivr.editor import IvrEditor
from ivr.prompts import PromptStore
from ivr.store import IvrStore
from tests.integration.test_acd_api import NoCalls

NOW = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Tuesday 10:00 in Shanghai


class Api:
    def __init__(self, client: TestClient[web.Request, web.Application], tokens: dict[str, str]):
        self.client = client
        self.tokens = tokens

    async def call(
        self, who: str, method: str, path: str, body: Any = None, *, data: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        resp = await self.client.request(
            method, path, json=body if data is None else None, data=data, headers=headers
        )
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.read()

    async def audited(self) -> list[tuple[str, str, Any, Any]]:
        """(action, target, before, after) of the IVR's audit entries, oldest first."""
        status, body = await self.call("admin", "GET", "/api/v1/audit?target_type=ivr")
        assert status == 200, body
        return [(e["action"], e["target_id"], e["before"], e["after"])
                for e in reversed(body["entries"])]  # fmt: skip


@pytest.fixture
async def api(db: Database, tmp_path: Path) -> AsyncIterator[Api]:
    prompts = PromptStore(tmp_path / "prompts", "/sounds/cti")
    editor = IvrEditor(IvrStore(db), prompts, tmp_path / "none.toml", "CN")
    app = create_app(WebDeps(db=db, live=NoCalls(), registry=CollectorRegistry(), hub=WsHub(db)))
    tokens = {
        role: await create_token(db, f"{role}1", role) for role in ("agent", "supervisor", "admin")
    }
    IvrApi(
        editor, prompts, reload=lambda by: editor.reload(by=by), clock=lambda: NOW,
        site_timezone="Asia/Shanghai",
    ).add_routes(app)  # fmt: skip
    async with TestClient(TestServer(app)) as client:
        yield Api(client, tokens)


def tone(seconds: float = 1.0) -> bytes:
    import io

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(
            struct.pack("<h", int(6000 * math.sin(2 * math.pi * 300 * i / 16000)))
            for i in range(int(16000 * seconds))
        ))  # fmt: skip
    return buf.getvalue()


MENU = {"greeting": "hello", "options": {"1": {"action": "queue", "target": "sales"}}}


async def test_admin_builds_menus_step_by_step(api: Api) -> None:
    status, body = await api.call("admin", "GET", "/api/v1/ivr/document")
    assert status == 200 and body == {"version": None, "document": {}}
    # a menu before its prompt: refused, naming the key, nothing stored
    status, body = await api.call("admin", "PUT", "/api/v1/ivr/menus/main", MENU)
    assert status == 422 and body["code"] == "invalid-menus"
    assert body["problems"] == [
        "menus.main.greeting: unknown prompt 'hello' (define it under [prompts])"
    ]
    status, body = await api.call(
        "admin", "PUT", "/api/v1/ivr/prompts/hello", {"text": "您好, 欢迎致电。", "voice": "cmn"}
    )
    assert status == 200 and body["version"]["id"] == 1
    status, body = await api.call("admin", "PUT", "/api/v1/ivr/menus/main", MENU)
    assert status == 200 and body["value"]["options"]["1"]["target"] == "sales"
    status, body = await api.call("supervisor", "GET", "/api/v1/ivr/document")
    assert body["document"]["defaults"]["menu"] == "main"  # the first menu starts
    assert body["version"]["created_by"] == "admin1"
    # a prompt in use cannot go
    status, body = await api.call("admin", "DELETE", "/api/v1/ivr/prompts/hello")
    assert status == 422 and body["problems"] == [
        "menus.main.greeting: unknown prompt 'hello' (define it under [prompts])"
    ]
    assert (await api.call("admin", "DELETE", "/api/v1/ivr/prompts/nope"))[0] == 404
    # the audit trail has every accepted change with before and after
    audited = await api.audited()
    assert [(a, t) for a, t, _, _ in audited] == [
        ("ivr.prompts.create", "prompts.hello"), ("ivr.menus.create", "menus.main"),
        ("ivr.defaults.update", "defaults"),  # the first menu became the start menu
    ]  # fmt: skip
    assert audited[1][2] is None and audited[1][3]["greeting"] == "hello"
    assert audited[2][3]["menu"] == "main"
    # listen to the rendered prompt
    status, wav = await api.call("supervisor", "GET", "/api/v1/ivr/prompts/hello/audio")
    assert status == 200 and wav[:4] == b"RIFF"
    status, body = await api.call("admin", "GET", "/api/v1/ivr/versions")
    assert [v["summary"] for v in body["versions"]] == ["menus.main added", "prompts.hello added"]


async def test_roles(api: Api) -> None:
    for who in ("agent", "supervisor"):
        status, body = await api.call(who, "PUT", "/api/v1/ivr/prompts/x", {"file": "beep"})
        assert status == 403, body
    assert (await api.call("agent", "GET", "/api/v1/ivr/document"))[0] == 403
    assert (await api.call("agent", "GET", "/api/v1/ivr/schedules"))[0] == 403
    assert (await api.call("supervisor", "GET", "/api/v1/ivr/schedules"))[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("PUT", "/api/v1/ivr/menus/%3Cimg%3E", MENU, 404),  # a name the route refuses
        ("PUT", "/api/v1/ivr/menus/main", [1, 2], 400),
        ("PUT", "/api/v1/ivr/menus/main", {"greeting": "x" * 5000}, 422),
        ("PUT", "/api/v1/ivr/prompts/p", {"text": "hi", "voice": "en;rm -rf /"}, 422),
        ("PUT", "/api/v1/ivr/prompts/p", {"upload": "../../etc/passwd"}, 422),
        ("PUT", "/api/v1/ivr/prompts/p", {"text": "lone \ud800 surrogate"}, 422),
        ("PUT", "/api/v1/ivr/prompts/p", {"text": "nul \x00"}, 422),
        (
            "PUT",
            "/api/v1/ivr/schedules/s",
            {"closed": {"action": "hangup"}, "subdivision": "\ud800"},
            422,
        ),
        ("PUT", "/api/v1/ivr/prompts/p", {"file": "../../../etc/passwd"}, 422),
        ("PUT", "/api/v1/ivr/numbers/4008001234", {"menu": "nowhere"}, 422),
        ("PUT", "/api/v1/ivr/defaults", {"menu": 5}, 422),
        ("PUT", "/api/v1/ivr/document", {"menus": {"m": {"greeting": []}}}, 422),
        ("POST", "/api/v1/ivr/versions/99/restore", None, 404),
        ("GET", "/api/v1/ivr/versions/\uff11\uff12", None, 404),
        ("POST", "/api/v1/ivr/tts", {"text": ""}, 400),
        ("POST", "/api/v1/ivr/tts", {"text": "hi", "voice": "<b>"}, 400),
        ("POST", "/api/v1/ivr/tts", {"text": "\ud800"}, 400),
        ("POST", "/api/v1/ivr/tts", {"text": "hi", "voice": "zz"}, 422),
    ],
)
async def test_bad_input_is_a_clear_4xx(
    api: Api, method: str, path: str, body: Any, status: int
) -> None:
    got, answer = await api.call("admin", method, path, body)
    assert got == status, answer
    assert isinstance(answer, dict) and answer.get("error")
    assert await api.audited() == []


async def test_deep_and_huge_bodies(api: Api) -> None:
    deep = b"[" * 100 + b"]" * 100
    got, answer = await api.call("admin", "PUT", "/api/v1/ivr/menus/main", data=deep)
    assert got == 400, answer
    huge = b'{"text": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    got, answer = await api.call("admin", "PUT", "/api/v1/ivr/document", data=huge)
    assert got == 413, answer


async def test_an_upload_plays_on_a_node_that_did_not_receive_it(
    api: Api, db: Database, tmp_path: Path
) -> None:
    """Another node (its own prompt directory, the same store) loads the menus with the
    uploaded recording: the file comes from the store, byte for byte (decision 0032)."""
    got, body = await api.call("admin", "POST", "/api/v1/ivr/prompts/welcome/upload", data=tone())
    assert got == 200, body
    upload = body["value"]["upload"]
    received = (tmp_path / "prompts" / f"upload-{upload}.wav").read_bytes()
    other = PromptStore(tmp_path / "node2", "/sounds/cti")
    editor = IvrEditor(IvrStore(db), other, tmp_path / "none.toml", "CN")
    loaded = await editor.load_current()
    assert loaded is not None and loaded.playable["welcome"] == f"/sounds/cti/upload-{upload}"
    assert (tmp_path / "node2" / f"upload-{upload}.wav").read_bytes() == received


async def test_upload_real_audio_only(api: Api, tmp_path: Path) -> None:
    got, body = await api.call(
        "admin", "POST", "/api/v1/ivr/prompts/welcome/upload", data=b"<svg onload=alert(1)>" * 9
    )
    assert got == 422 and body["code"] == "not-audio", body
    got, body = await api.call("admin", "POST", "/api/v1/ivr/prompts/welcome/upload", data=tone())
    assert got == 200, body
    upload = body["value"]["upload"]
    assert 0.9 < body["duration_s"] < 1.1
    stored = tmp_path / "prompts" / f"upload-{upload}.wav"
    with wave.open(str(stored)) as w:
        assert (w.getframerate(), w.getnchannels()) == (8000, 1)
    got, wav = await api.call("supervisor", "GET", "/api/v1/ivr/prompts/welcome/audio")
    assert got == 200 and wav == stored.read_bytes()
    assert (await api.audited())[-1][:2] == ("ivr.prompts.create", "prompts.welcome")
    got, wav = await api.call("admin", "POST", "/api/v1/ivr/tts", {"text": "Hello", "voice": "en"})
    assert got == 200 and wav[:4] == b"RIFF"


OFFICE = {
    "timezone": "Asia/Shanghai", "holidays": "CN",
    **{d: ["09:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    "closed": {"action": "voicemail", "target": "8000"},
    "emergency": {"action": "hangup"},
}  # fmt: skip


async def test_hours_calendar_and_override(api: Api) -> None:
    got, body = await api.call("admin", "PUT", "/api/v1/ivr/schedules/office", OFFICE)
    assert got == 200, body
    got, body = await api.call("supervisor", "GET", "/api/v1/ivr/schedules")
    (office,) = body["schedules"]
    assert office["open"] is True and office["override"] is None
    assert office["local_time"].startswith("2026-11-24T10:00")
    got, body = await api.call(
        "supervisor", "GET", "/api/v1/ivr/schedules/office/calendar?year=2026"
    )
    days = {d["date"]: d for d in body["days"]}
    assert days["2026-10-01"]["kind"] == "holiday" and days["2026-01-04"]["kind"] == "workday"
    assert (await api.call("supervisor", "GET", "/api/v1/ivr/schedules/office/calendar?year=abc"))[
        0
    ] == 400
    # a supervisor flips the center to emergency for an hour
    until = (NOW + timedelta(hours=1)).isoformat()
    got, body = await api.call(
        "supervisor", "PUT", "/api/v1/ivr/schedules/office/override",
        {"mode": "emergency", "until": until, "note": "<script>fire drill</script>"},
    )  # fmt: skip
    assert got == 200 and body["override"]["mode"] == "emergency", body
    got, body = await api.call("supervisor", "GET", "/api/v1/ivr/schedules")
    (office,) = body["schedules"]
    assert (office["open"], office["reason"]) == (False, "emergency")
    assert office["action"]["action"] == "hangup"
    assert office["override"]["note"] == "<script>fire drill</script>"
    for bad, code in (
        ({"mode": "party"}, 400), ({"mode": "day", "until": "yesterday"}, 400),
        ({"mode": "day", "until": (NOW - timedelta(hours=1)).isoformat()}, 400),
        ({"mode": "day", "until": "2026-11-24T12:00:00"}, 400), ({"mode": "day", "x": 1}, 400),
    ):  # fmt: skip
        got, answer = await api.call(
            "supervisor", "PUT", "/api/v1/ivr/schedules/office/override", bad
        )
        assert got == code, (bad, answer)
    assert (await api.call("supervisor", "PUT", "/api/v1/ivr/schedules/none/override",
                           {"mode": "day"}))[0] == 404  # fmt: skip
    assert (await api.call("agent", "PUT", "/api/v1/ivr/schedules/office/override",
                           {"mode": "day"}))[0] == 403  # fmt: skip
    got, body = await api.call(
        "supervisor", "PUT", "/api/v1/ivr/schedules/office/override", {"mode": "auto"}
    )
    assert got == 200 and body["override"] is None
    audited = await api.audited()
    assert [a for a, *_ in audited][-2:] == ["ivr.override.set", "ivr.override.set"]
    assert audited[-2][3]["note"] == "<script>fire drill</script>"
    assert audited[-1][2]["mode"] == "emergency" and audited[-1][3] == {"mode": "auto"}


async def test_import_toml_and_restore(api: Api) -> None:
    bad = b'[defaults]\nmenu = "main"\n\n[menus.main]\ngreeting = "nope"\n'
    got, body = await api.call("admin", "POST", "/api/v1/ivr/import", data=bad)
    assert got == 422 and body["problems"] == [
        "upload.toml:5: menus.main.greeting: unknown prompt 'nope' (define it under [prompts])"
    ]
    good = (
        bad.replace(b'greeting = "nope"', b'greeting = "p"') + b'[prompts]\np = { file = "beep" }\n'
    )
    got, body = await api.call("admin", "POST", "/api/v1/ivr/import", data=good)
    assert got == 200 and body["version"]["source"] == "import", body
    got, body = await api.call("admin", "PUT", "/api/v1/ivr/prompts/p", {"file": "tt-monkeys"})
    assert got == 200
    got, body = await api.call("admin", "POST", "/api/v1/ivr/versions/1/restore")
    assert got == 200 and body["version"]["summary"] == "restored version 1"
    got, body = await api.call("admin", "GET", "/api/v1/ivr/document")
    assert body["document"]["prompts"]["p"] == {"file": "beep", "voice": "en", "speed": 150}
    assert (await api.call("admin", "POST", "/api/v1/ivr/import", data=b"\xff\xfe"))[0] == 400


async def test_every_ivr_route_is_described_for_openapi(api: Api) -> None:
    from cti.web.openapi import build_spec, undescribed

    app = api.client.server.app
    assert [r for r in undescribed(app) if "/api/v1/ivr" in r] == []
    spec = build_spec(app)
    menu = spec["paths"]["/api/v1/ivr/menus/{name}"]
    assert set(menu) == {"put", "delete"} and menu["put"]["x-role"] == "admin"
    assert spec["paths"]["/api/v1/ivr/schedules/{name}/override"]["put"]["x-role"] == "supervisor"
