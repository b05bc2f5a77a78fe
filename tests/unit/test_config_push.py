"""Cutting a configuration push into manager messages (cti.ami.config_push): never more
than Asterisk's 128 header lines, actions whole, numbered from 0 in each message; values
Asterisk would not give back exactly are refused before anything is sent."""

from __future__ import annotations

import pytest

from cti.ami.actions import encode_action
from cti.ami.config_push import (
    MAX_HEADERS,
    Category,
    ConfigFile,
    actions,
    changes,
    expected,
    messages,
    render_text,
)

#: Action, ActionID, SrcFilename, DstFilename
FIXED = 4


def count_headers(msg: dict[str, str]) -> int:
    """Header lines of the encoded UpdateConfig, as Asterisk counts them."""
    headers = {"SrcFilename": "/e/a.conf", "DstFilename": "/e/b.conf", **msg}
    lines = encode_action("UpdateConfig", headers, "cti-1").decode().split("\r\n")
    return len([line for line in lines if line])


def test_exactly_128_headers_fit_one_message_and_one_more_spills() -> None:
    # NewCat 2 headers + 30 Appends of 4 = 122, + NewCat 2 = 124 = 128 - 4
    cats = [Category("a", tuple((f"o{i}", "v") for i in range(30))), Category("b")]
    (only,) = messages(actions(cats))
    assert count_headers(only) == MAX_HEADERS
    assert only["Action-000031"] == "NewCat" and only["Cat-000031"] == "b"
    first, second = messages(actions([*cats, Category("c")]))
    assert count_headers(first) == MAX_HEADERS
    assert second == {"Action-000000": "NewCat", "Cat-000000": "c"}  # numbered from 0


def test_every_message_stays_within_the_limit_and_keeps_actions_whole() -> None:
    cats = [
        Category(f"q{i}", tuple((f"o{j}", f"{i};{j}") for j in range(i % 7))) for i in range(99)
    ]
    acts = actions(cats)
    msgs = list(messages(acts))
    assert all(count_headers(m) <= MAX_HEADERS for m in msgs)
    assert sum(len(m) for m in msgs) == sum(len(a) for a in acts)
    for m in msgs:  # an Append never loses its Var/Value to the next message
        for key in m:
            if key.startswith("Action-") and m[key] == "Append":
                n = key.removeprefix("Action-")
                assert {f"Cat-{n}", f"Var-{n}", f"Value-{n}"} <= m.keys()


def test_no_category_is_one_empty_message() -> None:
    """An empty store still replaces the file (with the base alone)."""
    assert list(messages(actions([]))) == [{}]


def test_categories_of_one_name_are_built_apart_and_renamed() -> None:
    cats = [Category("p1", (("aors", "p1"),), ("phone-sip",)), Category("p1", (("type", "auth"),))]
    acts = actions(cats)
    assert acts[0] == (
        ("Action", "NewCat"),
        ("Cat", "cti-building-0"),
        ("Options", "inherit=phone-sip"),
    )
    assert acts[-1] == (("Action", "RenameCat"), ("Cat", "cti-building-1"), ("Value", "p1"))
    # a unique name is built in place
    assert actions([Category("q", (("a", "1"),))])[0] == (("Action", "NewCat"), ("Cat", "q"))


@pytest.mark.parametrize("value", ["a;b", "k=v", "中文;=", "", "a => b", "\\;", "x" * 1008])
def test_legal_values_pass_as_they_are(value: str) -> None:
    (_, append) = actions([Category("c", (("opt", value),))])
    assert dict(append)["Value"] == value


@pytest.mark.parametrize(
    "value",
    ["a\r\nAction: Command", "a\nb", "nul\x00", " lead", "trail\t", ">object", "é" * 505],
)
def test_values_asterisk_would_change_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        actions([Category("c", (("opt", value),))])


@pytest.mark.parametrize(
    "cat",
    [
        Category("bad]name"),
        Category("x", (("a = b", "1"),)),
        Category("x", (("a+", "1"),)),  # "a+ = 1" would append to a previous a
        Category("x", (), ("t,u",)),
        Category("x", (("a", "1"),), template=True),
    ],
)
def test_names_that_are_not_plain_words_and_templates_are_refused(cat: Category) -> None:
    with pytest.raises(ValueError):
        actions([cat])


def test_file_names_stay_in_the_configuration_directory() -> None:
    for name in ("../manager.conf", "/etc/passwd", "x.txt", "a b.conf"):
        with pytest.raises(ValueError):
            ConfigFile(name, "cti_empty.conf").check()
    ConfigFile("queues_cti.conf", "cti_empty.conf").check()


def test_text_escapes_semicolons_as_asterisk_writes_them() -> None:
    text = render_text([Category("q", (("a", "x;y"),), ("t",))])
    assert text == "[q](t)\na = x\\;y\n"


TEMPLATE = Category("tpl", (("type", "endpoint"), ("context", "c")), template=True)


def test_changes_send_nothing_for_a_file_that_holds_it_all() -> None:
    want = [Category("p1", (("aors", "p1"),), ("tpl",)), Category("p1", (("type", "auth"),))]
    now = [TEMPLATE, *(expected(c, {"tpl": TEMPLATE}) for c in want)]
    assert now[1].options == (("type", "endpoint"), ("context", "c"), ("aors", "p1"))
    assert changes(now, [TEMPLATE], want) == []


def test_changes_rebuild_a_changed_name_whole_and_leave_the_others() -> None:
    t = {"tpl": TEMPLATE}
    old = [Category("a", (("x", "1"),)), Category("a", (("y", "1"),)), Category("b", (("x", "1"),))]
    want = [Category("a", (("x", "1"),)), Category("a", (("y", "2"),)), *old[2:],
            Category("c", (("z", "1"),), ("tpl",))]  # fmt: skip
    acts = changes([TEMPLATE, *old], [TEMPLATE], want)
    assert acts is not None
    assert acts[0] == (("Action", "DelCat"), ("Cat", "a"))
    built = [dict(a)["Cat"] for a in acts if dict(a)["Action"] == "NewCat"]
    assert len(built) == 3 and not {"a", "b"} & set(built)  # a twice under temporary names
    assert all(n not in {"a", "b", "c", "tpl"} for n in built[:2]) and built[2] == "c"
    assert [dict(a)["Value"] for a in acts if dict(a)["Action"] == "RenameCat"] == ["a", "a"]
    # removed: deleted, nothing built
    assert changes([TEMPLATE, *old], [TEMPLATE], old[:2]) == [(("Action", "DelCat"), ("Cat", "b"))]
    assert expected(want[3], t).options[:2] == TEMPLATE.options


def test_a_file_not_on_its_base_is_pushed_whole() -> None:
    assert changes([], [TEMPLATE], []) is None  # missing the base's template
    other = Category("tpl", (("type", "aor"),), template=True)
    assert changes([other], [TEMPLATE], []) is None  # the base changed
    assert changes([TEMPLATE], [TEMPLATE], [Category("tpl", (("a", "1"),))]) is None
