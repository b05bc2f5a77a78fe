"""cti.spreadsheet: the product's one CSV formula neutraliser."""

from __future__ import annotations

import pytest

from cti.spreadsheet import DANGEROUS, cell, neutralise_text, restore

FORMULAS = [
    '=HYPERLINK("http://evil.example","click")', "=cmd|' /C calc'!A0", "+1+1", "-2+3",
    "@SUM(A1:A9)", "\t=1+1", "\r=1+1", "\uff1d1+1", "\uff0b1", "\uff0d1", "\uff20SUM(A1)",
]  # fmt: skip


@pytest.mark.parametrize("text", FORMULAS)
def test_formulas_become_text_and_come_back(text: str) -> None:
    safe = neutralise_text(text)
    assert safe == "'" + text
    assert cell(text) == safe
    assert restore(safe) == text


@pytest.mark.parametrize("text", ["", "ok", "张三", "a=b", " =1", "'quoted", "13800138000"])
def test_plain_text_is_kept(text: str) -> None:
    assert neutralise_text(text) == text
    assert restore(text) == text


def test_values() -> None:
    assert cell(None) == ""
    assert cell(True) == "true" and cell(False) == "false"
    assert cell(-2) == "-2" and cell(-2.5) == "-2.5" and cell(1 / 3) == "0.333333"
    assert cell({"b": 1, "a": "x"}) == '{"a": "x", "b": 1}'
    assert cell(["=1"]) == '["=1"]'  # JSON starts with [: not a formula


def test_every_dangerous_start_is_listed() -> None:
    assert set(DANGEROUS) >= {"=", "+", "-", "@", "\t", "\r"}
