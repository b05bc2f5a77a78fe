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
