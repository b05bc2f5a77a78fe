"""cti.phone.normalize: E.164 or "", never an exception."""

from __future__ import annotations

import pytest

from cti.phone import normalize

CN_MOBILE = "+8613800138000"


@pytest.mark.parametrize(
    "raw",
    [
        "+86 138 0013 8000",
        "0086-138-0013-8000",  # 00 is CN's international prefix
        "0086 138 0013 8000",
        "13800138000",
        "138-0013-8000",
        "+8613800138000",
        " +86 (138) 0013-8000 ",
    ],
)
def test_cn_mobile_formats(raw: str) -> None:
    assert normalize(raw, "CN") == CN_MOBILE


def test_region_is_case_insensitive() -> None:
    assert normalize("13800138000", "cn") == CN_MOBILE


def test_cn_landline() -> None:
    assert normalize("010-1234 5678", "CN") == "+861012345678"


def test_international_number_ignores_region() -> None:
    assert normalize("+1 650-253-0000", "CN") == "+16502530000"
    assert normalize("+86 138 0013 8000", "US") == CN_MOBILE


def test_other_region_idd_prefix() -> None:
    assert normalize("011 44 20 7946 0958", "US") == "+442079460958"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "anonymous",
        "Anonymous",
        "unknown",
        "<script>",
        "<script>alert(13800138000)</script>",
        "'; DROP TABLE calls; --",
        "13800138000\r\nAction: Originate",
        "1" * 10 * 1024,  # 10 KiB of digits
        "8" * 40,
        "+",
        "++8613800138000",
        "1",
        "12",
        "\ud800",
        "\x00" * 5,
        "".join(chr(0xFF10 + int(d)) for d in "13800138000"),  # full-width: not a caller ID
        "sip:13800138000@example.com",
    ],
)
def test_hostile_or_impossible_is_empty(raw: str) -> None:
    assert normalize(raw, "CN") == ""


def test_national_number_without_usable_region_is_empty() -> None:
    assert normalize("13800138000", "") == ""
    assert normalize("13800138000", "XX") == ""
    assert normalize("0086-138-0013-8000", "ZZ") == ""


def test_never_raises_on_wrong_types() -> None:
    assert normalize(None, "CN") == ""  # type: ignore[arg-type]
    assert normalize(13800138000, "CN") == ""  # type: ignore[arg-type]
    assert normalize("13800138000", None) == ""  # type: ignore[arg-type]
    assert normalize(["13800138000"], "CN") == ""  # type: ignore[arg-type]
    assert normalize("13800138000", ["CN"]) == ""  # type: ignore[arg-type]


def test_a_number_seen_before_is_not_parsed_again() -> None:
    """The wallboard normalises every waiting caller in every frame (issue #19)."""
    from cti.phone import _parse_cached

    hits = _parse_cached.cache_info().hits
    assert normalize("13900001111", "CN") == "+8613900001111"
    assert normalize(" 13900001111 ", "cn") == "+8613900001111"
    assert _parse_cached.cache_info().hits == hits + 1


def test_region_is_the_numbers_place_in_chinese_or_english() -> None:
    from cti.phone import region

    assert region("+8613800138000") == "北京市"
    assert region("+8613800138000", "en") == "Beijing"
    for bad in ("", "13800138000", "+86abc", "+" + "9" * 40, "<script>"):
        assert region(bad) == ""
