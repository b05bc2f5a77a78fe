"""``cti phones``: phones provisioned from the command line (the store; the daemon gives
them to Asterisk when it connects)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import cti_here, run_cti


def test_add_list_remove(tmp_path: Path) -> None:
    conf = tmp_path / "cti.toml"
    conf.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "cti.db"}"\n'
                    '[phones]\nrealm = "pbx.example"\n')  # fmt: skip
    web = run_cti(
        "--config", str(conf), "phones", "add", "agent101", "--label", "浏览器", cwd=tmp_path
    )
    assert web.returncode == 0, web.stderr
    assert json.loads(web.stdout)["name"] == "agent101-web1"
    assert "password" not in json.loads(web.stdout)  # the desktop gets it at sign-in
    # the further commands in this process (the real process made the first one)
    sip = cti_here("--config", str(conf), "phones", "add", "agent101", "--kind", "sip")
    assert sip.returncode == 0, sip.stderr
    assert len(json.loads(sip.stdout)["password"]) >= 24  # shown once
    listed = cti_here("--config", str(conf), "phones", "list", "--agent", "agent101")
    assert [json.loads(x)["name"] for x in listed.stdout.splitlines()] == [
        "agent101-web1", "agent101-sip1",
    ]  # fmt: skip
    assert "password" not in listed.stdout
    bad = cti_here("--config", str(conf), "phones", "add", "a\nb")
    assert bad.returncode == 2 and "agent" in bad.stderr
    gone = cti_here("--config", str(conf), "phones", "remove", "agent101-sip1")
    assert gone.returncode == 0
    again = cti_here("--config", str(conf), "phones", "remove", "agent101-sip1")
    assert again.returncode == 1
