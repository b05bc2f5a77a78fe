"""The API description is true: every route of the daemon with every registered feature
is described, the description is served, and schemathesis — run against the live daemon
(no Asterisk: what needs it answers 503) — finds no 5xx and no answer breaking it."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from cti.daemon import Daemon
from cti.store.tokens import create_token
from cti.web.openapi import build_spec, undescribed
from tests.acceptance.harness import settings_without_asterisk

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

#: random cases per operation in the fuzzing phase, after the coverage phase's every
#: boundary and invalid value the description allows (its own count: deterministic). No
#: --max-time: schemathesis 4 takes it for a budget and repeats fuzzing until it is spent
#: (the run took the whole 150 s it was given); a single pass grows with the API only
ST_EXAMPLES = int(os.environ.get("CTI_ST_EXAMPLES", "5"))
ST_TIMEOUT = 600  # a hung run fails; a run takes ~1 min on the CI machine
#: one: schemathesis' workers are threads generating cases side by side, and on Python
#: 3.11 two threads building ASTs at once (hypothesis reads its lambdas' source with
#: ast.parse) can raise "SystemError: AST constructor recursion depth mismatch": an
#: error of the run with every case passed (3 runs of 9 with 2 workers). Nor were 2
#: workers faster on the 2-core machine (the client and the daemon already fill it)
ST_WORKERS = 1


async def _daemon(db_url: str, tmp_path: Path) -> Daemon:
    settings = settings_without_asterisk(db_url, tmp_path)
    d = Daemon(settings)  # every registered feature
    await d.start()
    return d


@pytest.fixture
async def daemon(db_url: str, tmp_path: Path) -> AsyncIterator[Daemon]:
    d = await _daemon(db_url, tmp_path)
    yield d
    await d.stop()


@pytest.fixture
async def sqlite_daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    """One run is enough for schemathesis (the HTTP edge is the same on both databases)."""
    d = await _daemon(f"sqlite:///{tmp_path / 'cti.db'}", tmp_path)
    yield d
    await d.stop()


def app_of(d: Daemon) -> web.Application:
    assert d._runner is not None
    return d._runner.app


async def test_every_api_route_is_described(daemon: Daemon) -> None:
    app = app_of(daemon)
    assert undescribed(app) == [], "describe these routes with cti.web.openapi.doc"
    spec = build_spec(app)
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    routes = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/api/") and route.method not in ("HEAD", "*"):
            routes.add((route.method, path))
    assert len(described) == len(routes)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{daemon.http_port}/api/v1/openapi.json") as resp:
            assert resp.status == 200
            served = await resp.json()
    assert served["openapi"].startswith("3.") and served["paths"].keys() == spec["paths"].keys()


def test_a_route_without_description_is_caught() -> None:
    app = web.Application()

    async def handler(_: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/api/v1/new-thing", handler)
    app.router.add_get("/not-api", handler)
    assert undescribed(app) == ["GET /api/v1/new-thing"]


async def test_schemathesis_finds_no_server_error_and_no_spec_violation(
    sqlite_daemon: Daemon, tmp_path: Path
) -> None:
    daemon = sqlite_daemon
    token = await create_token(daemon.db, "schemathesis", "admin")
    # 503 is the documented answer of what needs Asterisk, which this daemon has not
    (tmp_path / "schemathesis.toml").write_text(
        '[checks.not_a_server_error]\nexpected-statuses = ["2xx", "3xx", "4xx", "503"]\n'
    )
    base = f"http://127.0.0.1:{daemon.http_port}"
    st = Path(sys.executable).parent / "st"
    proc = await asyncio.create_subprocess_exec(
        str(st), "run", f"{base}/api/v1/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                    "response_schema_conformance",
        "--max-examples", str(ST_EXAMPLES),
        "--phases", "examples,coverage,fuzzing", "--workers", str(ST_WORKERS),
        "--exclude-path", "/api/v1/auth/sign-out-everywhere",
        "--generation-database", "none", "--seed", "1", "--no-color",
        "-H", f"Authorization: Bearer {token}",
        "--request-timeout", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), ST_TIMEOUT)
    text = out.decode(errors="replace")
    print(text)  # the whole run: pytest shows it under "Captured stdout call" on failure
    assert proc.returncode == 0, outcome(text, f"schemathesis exited {proc.returncode}")
    # every operation went through both phases
    assert "✅ Coverage" in text and "✅ Fuzzing" in text, outcome(text, "a phase did not pass")
    counts = re.search(r"Selected: (\d+)/\d+\s+Tested: (\d+)", text)
    assert counts is not None and counts[1] == counts[2], outcome(text, "not all tested")


def outcome(text: str, why: str) -> str:
    """What a failed run's assertion says: the phases' counts, each operation that failed
    a check or raised an error with the first lines of its report, and the summary.

    Not the output's tail: the WARNINGS section (~12 kB: the operations answering 404 or
    422 to most generated data) comes after ERRORS and FAILURES and before SUMMARY, so the
    tail showed "9607 generated, 9607 passed" and none of what failed. An error is not a
    test case: a run whose only problem is one (a timeout, schemathesis' own exception)
    passes every case and still exits 1."""
    # [before the first section, name, body, name, body...]; the last line ("== 2 errors,
    # 2 warnings in 141.64s ==") is not a name: it stays in SUMMARY
    parts = re.split(r"^=+ ([A-Z ]+) =+$", text, flags=re.M)
    sections = {"HEAD": parts[0], **dict(zip(parts[1::2], parts[2::2], strict=True))}
    shown = [why, sections["HEAD"].strip()]
    # an error: its kind, message and (a traceback) the last exception raised; a failure:
    # the case, the check and the status
    for name, head in (("ERRORS", 2), ("FAILURES", 3)):
        blocks = re.split(r"^_+ (.+?) _+$", sections.get(name, ""), flags=re.M)
        for label, report in zip(blocks[1::2], blocks[2::2], strict=True):
            lines = [line.strip(" |") for line in report.splitlines() if line.strip(" |")]
            raised = [line for line in lines if re.match(r"[\w.]+(Error|Exception): ", line)]
            said = " / ".join(line[:200] for line in [*lines[:head], *raised[-1:]])
            shown.append(f"{name[:-1].lower()}: {label}: {said}")
    shown.append(sections.get("SUMMARY", text[-3000:]).strip())
    return "\n\n".join(shown)
