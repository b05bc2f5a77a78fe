"""After-call work (decision 0026), pure parts: the queue_log line the ACD writes is
derived onto its entry, counted per call in AHT, and the queue file keeps a guard."""

from __future__ import annotations

from acd.queues_conf import ACW_GUARD_S, render
from acd.store import ConfigInvalid, queue_params
from cti.queue_log import DerivedEntry, derive_entries, parse_line
from stats.formulas import EntryFacts, count_entry, figures

LINES = """\
1700000000|c1|q|NONE|ENTERQUEUE||13800138000|1
1700000003|c1|q|a1|CONNECT|3|c1-agent|1
1700000063|c1|q|a1|COMPLETEAGENT|3|60|1
1700000075|c1|q|a1|WRAPUPEND|12.250|disposition
1700000100|c2|q|NONE|ENTERQUEUE||13800138001|1
1700000102|c2|q|a1|CONNECT|2|c2-agent|1
1700000122|c2|q|a1|COMPLETECALLER|2|20|1
"""


def entries() -> dict[str, DerivedEntry]:
    rows = [r for r in map(parse_line, LINES.splitlines()) if r is not None]
    return {e.callid: e for e in derive_entries(rows)}


def test_wrapupend_lands_on_the_entry_it_follows() -> None:
    got = entries()
    assert got["c1"].wrapup_s == 12.25
    assert got["c2"].wrapup_s is None  # none enforced: no line


def test_a_torn_or_absurd_wrapup_line_is_ignored() -> None:
    text = LINES + "1700000130|c2|q|a1|WRAPUPEND|abc|timeout\n1700000131|c2|q|a1|WRAPUPEND|-5|x\n"
    rows = [r for r in map(parse_line, text.splitlines()) if r is not None]
    by = {e.callid: e for e in derive_entries(rows)}
    assert by["c2"].wrapup_s is None


def test_aht_uses_the_measured_wrapup_and_the_setting_only_without_one() -> None:
    measured = EntryFacts("answered", 3.0, 60.0, True, wrapup_s=12.25)
    fixed = EntryFacts("answered", 2.0, 20.0, True)
    kw = {"service_level_s": 20.0, "short_abandon_s": 5.0, "wrapup_s": 10.0}
    c = count_entry(measured, **kw)
    c.add(count_entry(fixed, **kw))
    f = figures(c)
    assert f["wrapup_s"] == 12.25 + 10.0
    assert f["aht_s"] == (60.0 + 20.0 + 12.25 + 10.0) / 2


def test_queues_with_after_call_work_keep_a_wrapuptime_guard() -> None:
    text = render([queue_params("acw", {"acw_max_s": 30}), queue_params("plain", {})])
    acw, plain = text.split("[plain]")
    assert f"wrapuptime = {ACW_GUARD_S}" in acw and "wrapuptime = 0" in plain


def test_acw_max_is_bounded() -> None:
    for bad in (-1, 3601, "30", 1.5):
        try:
            queue_params("q", {"acw_max_s": bad})
        except ConfigInvalid:
            continue
        raise AssertionError(f"{bad!r} accepted")


def test_announcements_of_the_queue_language_replace_app_queues_own() -> None:
    phrases = {"zh": {"queue-thereare": "/s/cti/aa", "queue-callswaiting": "/s/cti/bb",
                      "bogus-option": "/s/cti/cc"},
               "en": {"queue-thereare": "/s/cti/dd"}}  # fmt: skip
    zh = queue_params("zh_q", {"language": "zh", "announce_position": True})
    en = queue_params("en_q", {"language": "en", "announce_holdtime": True})
    quiet = queue_params("quiet", {"language": "zh"})
    cb = queue_params("cb", {"language": "en", "callback_key": "1"})
    text = render(
        [zh, en, quiet, cb],
        phrases=phrases,
        callback_sounds={("en", "1"): "/s/cti/offer"},
        callback_announce_s=30,
    )
    sections = {s.split("]", 1)[0]: s for s in text.split("\n[")[1:]}
    assert "queue-thereare = /s/cti/aa" in sections["zh_q"]
    assert "queue-callswaiting = /s/cti/bb" in sections["zh_q"]
    assert "bogus-option" not in text  # only app_queue's announcement options
    assert "queue-thereare = /s/cti/dd" in sections["en_q"]
    assert "queue-" not in sections["quiet"].replace("queue-defaults", "")  # nothing said
    assert "periodic-announce = /s/cti/offer" in sections["cb"]


def test_a_hostile_sound_name_never_reaches_the_queue_file() -> None:
    q = queue_params("zh_q", {"language": "zh", "announce_position": True})
    text = render([q], phrases={"zh": {"queue-thereare": "/x\n[evil]\nstrategy = ringall"}})
    assert "evil" not in text
