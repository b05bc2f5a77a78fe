"""The harness's reset between tests on the session's Asterisk (harness.end_channels): a
test that leaves the instance stuck fails its own teardown, naming what was stuck, and the
next test gets a working instance (one fault fails one test, not every later one).

Proved on tests/acceptance/stuck_asterisk_scenario.py, run in a pytest of its own (so with
an Asterisk of its own, and so in the others part): its faults are real ones.
"""

from __future__ import annotations

import asyncio
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.checkout import PROJECT, checkout_env

SCENARIO = PROJECT / "tests" / "acceptance" / "stuck_asterisk_scenario.py"


async def _run_scenario(tmp_path: Path) -> tuple[int, dict[str, ET.Element], str]:
    """The scenario's exit status, its test cases by name (JUnit XML) and its output."""
    report = tmp_path / "report.xml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", str(SCENARIO), "-p", "no:cacheprovider",
        f"--junitxml={report}", "-o", "junit_logging=no",
        cwd=PROJECT, env=checkout_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    assert proc.returncode is not None
    cases = {c.attrib["name"]: c for c in ET.parse(report).getroot().iter("testcase")}  # noqa: S314 (our pytest's)
    return proc.returncode, cases, out.decode(errors="replace")


def _error(case: ET.Element) -> str:
    """The text of the case's error (a failed setup or teardown), or ''."""
    error = case.find("error")
    return "" if error is None else f"{error.get('message', '')}\n{error.text or ''}"


def _passed(case: ET.Element) -> bool:
    return all(case.find(kind) is None for kind in ("failure", "error", "skipped"))


async def test_a_test_that_leaves_asterisk_stuck_fails_alone_and_the_next_gets_a_working_one(
    tmp_path: Path,
) -> None:
    rc, cases, out = await _run_scenario(tmp_path)
    assert rc == 1, out[-3000:]  # the two tests that left a fault: errors at teardown
    stuck_call = cases["test_leaves_a_call_in_an_agi_that_never_answers"]
    after_call = cases["test_the_next_test_after_a_stuck_call_gets_a_working_asterisk"]
    stopped = cases["test_leaves_asterisk_stopped"]
    after_stop = cases["test_the_next_test_after_a_stopped_asterisk_gets_a_working_one"]

    # the call in an AGI that never answers outlived every hang-up: its test fails at
    # teardown, naming it (its application) and the restart
    report = _error(stuck_call)
    assert "failed on teardown" in report, out[-3000:]
    assert "test_leaves_a_call_in_an_agi_that_never_answers left" in report
    assert "1 channel(s) no hang-up ended" in report and "in AGI(agi://127.0.0.1:" in report
    assert "was killed and started again" in report
    # the Asterisk stopped by a test: that test fails at teardown, Asterisk restarted
    report = _error(stopped)
    assert "failed on teardown" in report, out[-3000:]
    assert "test_leaves_asterisk_stopped left" in report and "did not answer" in report
    assert "was killed and started again" in report
    # and each next test found no channel and a call that ran and ended
    assert _passed(after_call), _error(after_call) or out[-3000:]
    assert _passed(after_stop), _error(after_stop) or out[-3000:]
