"""CRM pieces without sockets: name keys, input validation, CSV reading, signatures."""

from __future__ import annotations

import io

import pytest
from pydantic import ValidationError

from crm_bridge.cli import ProgressBar
from crm_bridge.config import CrmConfig
from crm_bridge.importexport import ImportFormatError, read_csv, row_to_customer, to_xlsx
from crm_bridge.keys import name_key, tags_list, tags_text
from crm_bridge.schemas import ContactIn, CustomerIn
from crm_bridge.webhooks import sign, verify
from cti.phone import normalize


@pytest.mark.parametrize(
    ("a", "b"),
    [("Zhang San", "zhang  san"), ("张 三", "张三"), ("O'Brien-Smith", "o'briensmith")],
)
def test_name_key_ignores_case_and_separators(a: str, b: str) -> None:
    assert name_key(a) == name_key(b)


@pytest.mark.parametrize("raw", ["+86 138 0013 8000", "13800138000", "0086-138-0013-8000"])
def test_number_formats_normalise_alike(raw: str) -> None:
    assert normalize(raw, "CN") == "+8613800138000"


def test_tags_round_trip() -> None:
    assert tags_text(["vip", " gold ", "vip"]) == ",vip,gold,"
    assert tags_list(",vip,gold,") == ["vip", "gold"]
    assert tags_text([]) == "" and tags_list("") == []


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "x" * 257},
        {"name": "a\x00b"},
        {"name": "x", "notes": "n" * 65536},
        {"name": "x", "tags": ["a,b"]},
        {"name": "x", "emails": ["not-an-email"]},
        {"name": "x", "kind": "robot"},
        {"name": "x", "surprise": True},
        {"name": "x", "phones": ["1" * 49]},
    ],
)
def test_customer_input_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CustomerIn.model_validate(body)


def test_shorthand_contact() -> None:
    c = CustomerIn.model_validate({"name": "Li", "phones": ["13800138000"], "emails": ["l@x.cn"]})
    [contact] = c.all_contacts()
    assert isinstance(contact, ContactIn)
    assert (contact.name, contact.phones[0].number, contact.emails) == (
        "Li",
        "13800138000",
        ["l@x.cn"],
    )
    assert CustomerIn(name="No contact").all_contacts() == []


def test_read_csv() -> None:
    rows = read_csv("\ufeffname,phones\n王,138;139\n\n".encode())
    assert rows == [{"name": "王", "phones": "138;139"}, {}]
    assert row_to_customer(rows[0]).contacts[0].phones[1].number == "139"
    for bad, message in [
        (b"", "empty"),
        (b"phones\n1\n", "no 'name'"),
        (b"name,x\n", "unknown columns"),
        (b"name\n\xff\n", "not UTF-8"),
    ]:
        with pytest.raises(ImportFormatError, match=message):
            read_csv(bad)


def test_xlsx_export_never_writes_formulas() -> None:
    import openpyxl  # type: ignore[import-untyped]

    data = to_xlsx([["name"], ["=cmd|' /C calc'!A0"], ["bell\x07"]])
    ws = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    assert ws["A2"].data_type == "s" and ws["A2"].value == "=cmd|' /C calc'!A0"
    assert ws["A3"].value == "bell\ufffd"


def test_signature() -> None:
    body = b'{"event": "call.ended"}'
    sig = sign("k" * 16, "1700000000", body)
    assert sig.startswith("sha256=") and len(sig) == 71
    assert verify("k" * 16, "1700000000", body, sig)
    assert not verify("k" * 16, "1700000001", body, sig)


def test_config_validation() -> None:
    cfg = CrmConfig.model_validate(
        {"webhooks": [{"url": "http://x.example/h", "secret": "s" * 16}]}
    )
    assert cfg.webhooks[0].events[0] == "call.ringing" and cfg.pool_after_days == 30
    for bad in [
        {"pool_after_days": 0},
        {"webhooks": [{"url": "ftp://x", "secret": "s" * 16}]},
        {"webhooks": [{"url": "http://x", "secret": "short"}]},
        {"webhooks": [{"url": "http://x", "secret": "s" * 16, "events": ["call.nope"]}]},
        {"unknown": 1},
    ]:
        with pytest.raises(ValidationError):
            CrmConfig.model_validate(bad)


def test_progress_bar_draws_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    bar = ProgressBar("importing", out)
    for i in range(1, 201):
        bar(i, 200)
    assert out.getvalue().endswith("] 200/200\n") and "100/200" in out.getvalue()
    silent = io.StringIO()
    ProgressBar("x", silent)(1, 1)
    assert silent.getvalue() == ""


def test_the_grams_migration_fills_rows_as_the_store_writes_them() -> None:
    """crm_0007 carries a frozen copy of search_grams (a migration never imports a
    feature): while the live function is unchanged, both give the same words; crm_0006's
    older copy gave the same but the 5-digit windows crm_0007 added."""
    import importlib

    from crm_bridge.keys import search_grams

    m = importlib.import_module("cti.migrations.versions.crm_0007_search_trigrams")
    old = importlib.import_module("cti.migrations.versions.crm_0006_search_grams")
    for row in (("张伟\nzhang wei", "+8613800138000\n010-1234", "Wei.Z@Example.com"),
                ("ACME Ltd", "", ""), ("", "", "a@b.c\nx.y@z"),
                ("公司12345", "", "user123456@mail-17.example.com")):  # fmt: skip
        assert m.search_grams(*row) == search_grams(*row)
        words = set(search_grams(*row).split())
        runs = {w for w in words if len(w) == 6 and w[1:].isdigit()}
        assert set(old.search_grams(*row).split()) == words - runs
