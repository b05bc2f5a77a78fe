"""The tests run this checkout's code, in their own process and in the processes they start
(the shared venv's editable install points at another checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import acd
import cti
import phones
from tests.checkout import PROJECT, checkout_env

WHERE = "import cti; print(cti.__file__)"


def test_the_test_process_imports_this_checkout() -> None:
    for package in (cti, acd, phones):
        assert Path(str(package.__file__)).resolve().parents[1] == PROJECT, package.__file__


def test_a_started_python_imports_this_checkout_from_anywhere(tmp_path: Path) -> None:
    env = checkout_env({**os.environ, "PYTHONPATH": f"/elsewhere{os.pathsep}{PROJECT}"})
    assert env["PYTHONPATH"] == f"{PROJECT}{os.pathsep}/elsewhere"
    out = subprocess.run(
        [sys.executable, "-c", WHERE], cwd=tmp_path, env=env,
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert Path(out.stdout.splitlines()[0]).resolve().parents[1] == PROJECT, out.stdout


def test_checkout_env_adds_to_the_given_environment_only() -> None:
    env = checkout_env({"PATH": "/bin"}, PYTHONTZPATH="/tz")
    assert env == {"PATH": "/bin", "PYTHONTZPATH": "/tz", "PYTHONPATH": str(PROJECT)}
