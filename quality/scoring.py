"""QA scoring forms and the score of an evaluation (decision 0026). Pure.

A form has sections of questions; each question has a weight and a maximum of points.
An evaluation gives every question 0..max points; its score is
sum(weight * points / max) / sum(weight) * 100 (0-100). Forms are immutable once created (a
changed form is a new form), so an evaluation's score always reads the form it used.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["AnswerError", "FormIn", "form_definition", "question_ids", "score"]

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class QuestionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Title
    weight: int = Field(1, ge=1, le=100)
    max_points: int = Field(5, ge=1, le=10)


class SectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    questions: list[QuestionIn] = Field(min_length=1, max_length=50)


class FormIn(BaseModel):
    """``POST /api/v1/quality/forms``."""

    model_config = ConfigDict(extra="forbid")

    name: Title
    sections: list[SectionIn] = Field(min_length=1, max_length=20)


class AnswerError(ValueError):
    """Answers that do not fit the form (message meant for the API user)."""


def form_definition(form: FormIn) -> dict[str, object]:
    """The stored definition: every question gets a stable id ``s<i>q<j>``."""
    return {
        "sections": [
            {
                "title": s.title,
                "questions": [
                    {
                        "id": f"s{i}q{j}",
                        "text": q.text,
                        "weight": q.weight,
                        "max_points": q.max_points,
                    }
                    for j, q in enumerate(s.questions, 1)
                ],
            }
            for i, s in enumerate(form.sections, 1)
        ]
    }


def question_ids(definition: dict[str, object]) -> dict[str, tuple[int, int]]:
    """question id -> (weight, max points)."""
    out: dict[str, tuple[int, int]] = {}
    sections = definition.get("sections", [])
    assert isinstance(sections, list)
    for s in sections:
        for q in s["questions"]:
            out[str(q["id"])] = (int(q["weight"]), int(q["max_points"]))
    return out


def score(definition: dict[str, object], answers: dict[str, int]) -> float:
    """0-100; raises AnswerError unless every question has 0..max points."""
    questions = question_ids(definition)
    unknown = sorted(set(answers) - set(questions))
    if unknown:
        raise AnswerError(f"unknown question(s): {', '.join(unknown[:10])}")
    missing = sorted(set(questions) - set(answers))
    if missing:
        raise AnswerError(f"unanswered question(s): {', '.join(missing[:10])}")
    total_weight = sum(w for w, _ in questions.values())
    got = 0.0
    for qid, (weight, top) in questions.items():
        points = answers[qid]
        if type(points) is not int or not 0 <= points <= top:
            raise AnswerError(f"{qid}: points must be an integer 0..{top}")
        got += weight * points / top
    return round(100.0 * got / total_weight, 2)
