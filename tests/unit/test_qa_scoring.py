"""QA scoring (decision 0026): the form's formula, answers that do not fit it refused,
the report and the calibration's spreads."""

from __future__ import annotations

import pytest

from quality.qa_store import QaStore
from quality.scoring import AnswerError, FormIn, form_definition, score

FORM = FormIn.model_validate({
    "name": "Service",
    "sections": [
        {"title": "Greeting", "questions": [{"text": "Name", "weight": 2, "max_points": 5}]},
        {"title": "Solution", "questions": [{"text": "Solved", "weight": 3, "max_points": 4},
                                            {"text": "Polite", "weight": 1, "max_points": 1}]},
    ],
})  # fmt: skip
DEF = form_definition(FORM)


def test_score_is_the_weighted_share_of_points() -> None:
    assert score(DEF, {"s1q1": 5, "s2q1": 4, "s2q2": 1}) == 100.0
    assert score(DEF, {"s1q1": 0, "s2q1": 0, "s2q2": 0}) == 0.0
    # (2 * 3/5 + 3 * 2/4 + 1 * 1/1) / 6 * 100
    assert score(DEF, {"s1q1": 3, "s2q1": 2, "s2q2": 1}) == round(100 * (1.2 + 1.5 + 1) / 6, 2)


@pytest.mark.parametrize(
    "answers",
    [{"s1q1": 5, "s2q1": 4}, {"s1q1": 6, "s2q1": 4, "s2q2": 1}, {"s1q1": -1, "s2q1": 4, "s2q2": 1},
     {"s1q1": 5, "s2q1": 4, "s2q2": 1, "s9q9": 1}, {"s1q1": True, "s2q1": 4, "s2q2": 1}],
)  # fmt: skip
def test_answers_that_do_not_fit_the_form_are_refused(answers: dict[str, int]) -> None:
    with pytest.raises(AnswerError):
        score(DEF, answers)


def test_report_and_calibration() -> None:
    rows = [
        {"agent": "a1", "form": "Service", "reviewer": "r1", "score": 80.0,
         "answers": {"s1q1": 4, "s2q1": 3, "s2q2": 1}, "acknowledged_at": "x"},
        {"agent": "a1", "form": "Service", "reviewer": "r2", "score": 60.0,
         "answers": {"s1q1": 2, "s2q1": 3, "s2q2": 0}, "acknowledged_at": None},
    ]  # fmt: skip
    (rep,) = QaStore.report(rows, "agent")
    assert rep == {"agent": "a1", "evaluations": 2, "avg_score": 70.0, "min_score": 60.0,
                   "max_score": 80.0, "acknowledged": 1}  # fmt: skip
    cal = QaStore.calibration({"id": 1, **DEF}, rows)
    spreads = {q["id"]: q["spread"] for q in cal["questions"]}
    assert spreads == {"s1q1": 2, "s2q1": 0, "s2q2": 1}
    assert cal["score_spread"] == 20.0 and cal["score_stdev"] == 10.0
