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

    # the same again, unless_same: read back, nothing sent; otherwise pushed
    plain = ConfigFile(FILE, "cti_empty.conf", cats[:1])
    assert await push(ami, plain) == 1
    assert await push(ami, plain, unless_same=True) == 0
    other = ConfigFile(FILE, "cti_empty.conf", (Category("plain", (("opt0", "changed"),)),))
    assert await push(ami, other, unless_same=True) == 1
    assert await read(ami, FILE) == list(other.categories)
    # a file with inheritance never compares equal (GetConfig shows inherited options)
    twin = ConfigFile(FILE, "pjsip_phones_base.conf", cats[1:2])
    assert await push(ami, twin) == 1 and await push(ami, twin, unless_same=True) == 1

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
