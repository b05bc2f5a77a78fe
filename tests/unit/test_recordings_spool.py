"""The recordings sidecar's links (recordings.spool): one file, one action, a real secret."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from cti.config import ConfigError
from recordings.cli import _spool_serve
from recordings.naming import PathRefused
from recordings.spool import SpoolSigner

NAME = "2026/11/29/cti-20261129T000000-abc-0.wav"


def test_a_link_names_one_file_and_one_action() -> None:
    signer = SpoolSigner("x" * 32)
    get, delete = signer.url_path("GET", NAME), signer.url_path("DELETE", NAME)
    assert get.startswith("/spool/v1/") and get.endswith("/" + NAME) and get != delete
    sig = get.split("/")[3]
    assert signer.valid("GET", NAME, sig)
    assert not signer.valid("DELETE", NAME, sig)
    assert not signer.valid("GET", NAME.replace("abc", "abd"), sig)
    assert not SpoolSigner("y" * 32).valid("GET", NAME, sig)


@pytest.mark.parametrize("name", ["../etc/passwd", "/abs.wav", "2026/11/29/x.wav", NAME + "/.."])
def test_only_recording_names_are_linked(name: str) -> None:
    with pytest.raises(PathRefused):
        SpoolSigner("x" * 32).url_path("GET", name)


def test_the_sidecar_needs_a_real_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SpoolSigner("short")
    monkeypatch.delenv("CTI_RECORDINGS__SPOOL_SECRET", raising=False)
    args = argparse.Namespace(root=tmp_path, host="127.0.0.1", port=0)
    with pytest.raises(ConfigError, match="SPOOL_SECRET"):
        _spool_serve(args)
