"""The survey's FastAGI arguments are checked strictly (decision 0026); the score is
counted once per entry in the statistics' formulas."""

from __future__ import annotations

from cti.queue_log import derive_entries, parse_line
from quality.survey import SurveyCall, parse_args
from stats.formulas import EntryFacts, count_entry, figures

GOOD = ["support", "zh", "a101", "1700000000.12", "1700000000.12"]


def test_good_arguments_parse() -> None:
    assert parse_args(GOOD) == SurveyCall("support", "zh", "a101", "1700000000.12",
                                          "1700000000.12")  # fmt: skip


def test_hostile_or_missing_arguments_are_refused() -> None:
    for i, bad in [(0, "Support"), (0, "x;rm"), (1, "fr"), (1, ""), (2, "a 1"),
                   (2, "a\r\nAction: Originate"), (3, "../x"), (4, "")]:  # fmt: skip
        args = list(GOOD)
        args[i] = bad
        assert parse_args(args) is None, (i, bad)
    assert parse_args(GOOD[:4]) is None


LINES = """\
1700000000|c1|q|NONE|ENTERQUEUE||13800138000|1
1700000003|c1|q|a1|CONNECT|3|x|1
1700000063|c1|q|a1|COMPLETEAGENT|3|60|1
1700000070|c1|q|a1|SURVEY|4
1700000100|c2|q|NONE|ENTERQUEUE||13800138001|1
1700000102|c2|q|a1|CONNECT|2|y|1
1700000122|c2|q|a1|COMPLETEAGENT|2|20|1
1700000130|c2|q|a1|SURVEY|9
"""


def test_survey_lines_land_on_their_entry_and_only_scores_1_to_5_count() -> None:
    rows = [r for r in map(parse_line, LINES.splitlines()) if r is not None]
    by = {e.callid: e for e in derive_entries(rows)}
    assert by["c1"].survey_score == 4 and by["c2"].survey_score is None
    kw = {"service_level_s": 20.0, "short_abandon_s": 5.0, "wrapup_s": 0.0}
    c = count_entry(EntryFacts("answered", 3.0, 60.0, True, survey_score=4), **kw)
    c.add(count_entry(EntryFacts("answered", 2.0, 20.0, True, survey_score=2), **kw))
    c.add(count_entry(EntryFacts("answered", 2.0, 20.0, True), **kw))
    f = figures(c)
    assert (f["survey_count"], f["survey_avg"]) == (2, 3.0)
