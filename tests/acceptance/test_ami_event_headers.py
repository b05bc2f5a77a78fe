"""The screen's table of what each AMI event may carry matches the installed Asterisk's
own documentation (a newer Asterisk that adds headers would otherwise see its events
dropped as forged: regenerate with scripts/gen_ami_event_headers.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cti.asterisk.instance import ChrootAsterisk

PROJECT = Path(__file__).resolve().parents[2]


def test_event_table_covers_the_installed_asterisk(asterisk: ChrootAsterisk) -> None:
    doc = asterisk.root / "usr/share/asterisk/documentation/core-en_US.xml"
    assert doc.is_file(), doc
    proc = subprocess.run(
        [sys.executable, str(PROJECT / "scripts" / "gen_ami_event_headers.py"), "--check",
         str(doc)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
