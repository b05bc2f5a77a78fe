"""This checkout, for the processes the tests start.

The shared virtual environment has the landing checkout installed in editable mode, so a
``python -m cti.cli`` started by a test of another worktree would import *that* code, not
the code under test. Every test that starts Python (``cti``, the daemon, a script that
imports the project) passes :func:`checkout_env` as the child's environment: the child then
imports this checkout's packages first, whatever else ``PYTHONPATH`` held.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def checkout_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default: this process's environment) plus ``extra``, with this checkout
    first on ``PYTHONPATH`` (the entries already there kept after it, not repeated)."""
    env = dict(os.environ if base is None else base, **extra)
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(PROJECT)]
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT), *rest])
    return env
