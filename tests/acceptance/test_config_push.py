"""Configuration files pushed over AMI (cti.ami.config_push, decision 0031) against the
real Asterisk: what Asterisk reads back is exactly what was pushed, whatever the values
hold, at the manager's 128-header boundary and across several messages."""

from __future__ import annotations

from cti.ami.client import AmiClient
from cti.ami.config_push import (
    MAX_HEADERS,
    Category,
    ConfigFile,
    actions,
    changes,
    expected,
    messages,
    push,
    read,
)
from cti.asterisk.instance import ChrootAsterisk

FILE = "cti_push_test.conf"

#: legal values Asterisk's parser would misread if written naively
HOSTILE = (
    "a;b", "x\\;y", "ends\\", "k=v=w", "a => b", "--;", ";--", ";", "[cat]", "#include x",
    "中文 客户; 备注=1", "tab\tinside", "", "a,b,c", "${EXTEN}", "quote\"'", "Ω" * 300,
    "界" * 336,  # 1008 bytes: the longest a manager line carries
)  # fmt: skip


async def test_hostile_but_legal_values_come_back_exactly(
    asterisk: ChrootAsterisk, ami: AmiClient
) -> None:
    cats = (
        Category("plain", tuple((f"opt{i}", v) for i, v in enumerate(HOSTILE))),
        # on a template of the base file (pjsip_phones_base.conf's phone-aor)
        Category("child", (("own", "c=1"), ("max_contacts", "1")), inherit=("phone-aor",)),
        # three categories of one name, each with its own options (PJSIP's style)
        Category("twin", (("type", "endpoint"), ("n", "1"))),
        Category("twin", (("type", "aor"),)),
        Category("twin", (("type", "auth"), ("n", "3"))),
    )
    await push(ami, ConfigFile(FILE, "pjsip_phones_base.conf", cats))
    back = [c for c in await read(ami, FILE) if not c.template]
    assert [c.name for c in back] == ["plain", "child", "twin", "twin", "twin"]
    assert back[0].options == cats[0].options
    assert back[1].inherit == ("phone-aor",)
    assert dict(back[1].options) == {
        "type": "aor", "max_contacts": "1", "remove_existing": "yes",
        "remove_unavailable": "yes", "own": "c=1",
    }  # fmt: skip
    assert [c.options for c in back[2:]] == [c.options for c in cats[2:]]

    # changes_only: read back, nothing sent when the file holds it; otherwise only the
    # names that differ (a file with inheritance too: GetConfig shows it expanded)
    plain = ConfigFile(FILE, "cti_empty.conf", cats[:1])
    assert await push(ami, plain) == 1
    assert await push(ami, plain, changes_only=True) == 0
    other = ConfigFile(FILE, "cti_empty.conf", (Category("plain", (("opt0", "changed"),)),))
    assert await push(ami, other, changes_only=True) == 1
    assert await read(ami, FILE) == list(other.categories)
    whole = ConfigFile(FILE, "pjsip_phones_base.conf", cats)
    assert await push(ami, whole, changes_only=True) >= 1  # not on its base: pushed whole
    assert await push(ami, whole, changes_only=True) == 0

    # a second push replaces the whole file (nothing of the first survives)
    await push(ami, ConfigFile(FILE, "cti_empty.conf", (Category("only", (("a", "1"),)),)))
    assert await read(ami, FILE) == [Category("only", (("a", "1"),))]


async def test_a_message_of_exactly_128_headers_and_one_that_spills(
    asterisk: ChrootAsterisk, ami: AmiClient
) -> None:
    # NewCat = 2 headers, each Append 4: 2 + 30 * 4 = 122, + the message's 4 = 126;
    # one more category of 2 headers makes exactly 128
    full = (
        Category("a", tuple((f"o{i}", f"v{i};") for i in range(30))),
        Category("b"),
    )
    msgs = list(messages(actions(full)))
    assert len(msgs) == 1 and len(msgs[0]) + 4 == MAX_HEADERS
    assert await push(ami, ConfigFile(FILE, "cti_empty.conf", full)) == 1
    assert await read(ami, FILE) == list(full)

    spills = (*full, Category("c", (("last", "x"),)))
    assert await push(ami, ConfigFile(FILE, "cti_empty.conf", spills)) == 2
    assert await read(ami, FILE) == list(spills)


async def test_many_messages_build_one_file(asterisk: ChrootAsterisk, ami: AmiClient) -> None:
    cats = tuple(
        Category(f"q{i}", tuple((f"o{j}", f"{i}.{j}") for j in range(12))) for i in range(40)
    )
    assert await push(ami, ConfigFile(FILE, "cti_empty.conf", cats)) > 10
    assert await read(ami, FILE) == list(cats)


async def test_changes_only_rewrites_the_names_that_differ_and_reads_back_exactly(
    asterisk: ChrootAsterisk, ami: AmiClient
) -> None:
    """A push of only what differs ends with what a whole push gives (the base's
    templates, then exactly the wanted categories), touching only what changed."""
    base = "pjsip_phones_base.conf"
    cats = [
        *(Category(f"p{i}", (("aors", f"p{i}"),), ("phone-sip",)) for i in range(40)),
        *(Category(f"p{i}", (("type", "auth"), ("username", f"p{i};x"))) for i in range(40)),
    ]
    await push(ami, ConfigFile(FILE, base, tuple(cats)))
    templates = [c for c in await read(ami, base)]
    assert templates and all(c.template for c in templates)

    # one changed (two categories of one name), one removed, one added, one hostile
    want = [c for c in cats if c.name not in ("p3", "p7")]
    want += [
        Category("p3", (("aors", "p3"), ("auth", "p3")), ("phone-sip",)),
        Category("p3", (("type", "auth"), ("username", "p3 new"))),
        Category("new", tuple((f"o{i}", v) for i, v in enumerate(HOSTILE))),
    ]
    acts = changes(await read(ami, FILE), templates, want)
    assert acts is not None
    assert [a[1][1] for a in acts if a[0][1] == "DelCat"] == ["p3", "p7"]
    assert await push(ami, ConfigFile(FILE, base, tuple(want)), changes_only=True) >= 1
    back = await read(ami, FILE)
    assert back[: len(templates)] == templates
    by_name = {c.name for c in back[len(templates) :]}
    assert by_name == {c.name for c in want}
    t = {c.name: c for c in templates}
    for name in by_name:
        assert [c for c in back if c.name == name] == [
            expected(c, t) for c in want if c.name == name
        ], name
    assert changes(back, templates, want) == []

    # a file that lost most of its names is rebuilt from its base (fewer headers than
    # deleting each: one message, not two)
    many = tuple(Category(f"m{i}", (("a", "1"),)) for i in range(100))
    await push(ami, ConfigFile(FILE, base, many))
    few = ConfigFile(FILE, base, (Category("m7", (("a", "2"),)),))
    assert await push(ami, few, changes_only=True) == 1
    assert await read(ami, FILE) == [*templates, *few.categories]

    # a file that does not start with its base is pushed whole
    await push(ami, ConfigFile(FILE, "cti_empty.conf", (Category("x", (("a", "1"),)),)))
    assert changes(await read(ami, FILE), templates, want) is None
    await push(ami, ConfigFile(FILE, base, tuple(want)), changes_only=True)
    assert changes(await read(ami, FILE), templates, want) == []
