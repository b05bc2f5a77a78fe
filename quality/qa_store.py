"""QA scoring store: forms, evaluations, acknowledgement, reports, calibration."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from statistics import pstdev
from typing import Any

from sqlalchemy import select

from cti.store.db import Database
from quality.qa_models import QaEvaluation, QaForm
from quality.scoring import FormIn, form_definition, question_ids, score

__all__ = ["QaStore"]


def _form_dict(f: QaForm) -> dict[str, Any]:
    return {"id": f.id, "name": f.name, "active": f.active, "created_by": f.created_by,
            "created_at": f.created_at.isoformat(), **json.loads(f.definition)}  # fmt: skip


def _eval_dict(e: QaEvaluation, form_name: str = "") -> dict[str, Any]:
    return {
        "id": e.id, "form_id": e.form_id, "form": form_name, "linkedid": e.linkedid,
        "recording_id": e.recording_id, "agent": e.agent, "reviewer": e.reviewer,
        "answers": json.loads(e.answers), "comments": json.loads(e.comments),
        "score": e.score, "created_at": e.created_at.isoformat(),
        "acknowledged_at": e.acknowledged_at.isoformat() if e.acknowledged_at else None,
    }  # fmt: skip


class QaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- forms -------------------------------------------------------------------------------
    async def create_form(self, form: FormIn, by: str) -> dict[str, Any]:
        async with self.db.session() as s, s.begin():
            row = QaForm(name=form.name, definition=json.dumps(form_definition(form),
                         ensure_ascii=False), created_by=by[:128])  # fmt: skip
            s.add(row)
            await s.flush()
            return _form_dict(row)

    async def forms(self) -> list[dict[str, Any]]:
        async with self.db.session() as s:
            rows = (await s.execute(select(QaForm).order_by(QaForm.id))).scalars().all()
            return [_form_dict(r) for r in rows]

    async def form(self, form_id: int) -> dict[str, Any] | None:
        async with self.db.session() as s:
            row = await s.get(QaForm, form_id)
            return _form_dict(row) if row is not None else None

    # --- evaluations ---------------------------------------------------------------------------
    async def evaluate(
        self, *, form_id: int, linkedid: str, agent: str, reviewer: str,
        recording_id: int | None, answers: dict[str, int], comments: list[dict[str, Any]],
    ) -> dict[str, Any] | None:  # fmt: skip
        """None when the form does not exist; raises AnswerError for answers that do not
        fit it."""
        async with self.db.session() as s, s.begin():
            form = await s.get(QaForm, form_id)
            if form is None:
                return None
            total = score(json.loads(form.definition), answers)
            row = QaEvaluation(
                form_id=form_id, linkedid=linkedid, agent=agent, reviewer=reviewer[:128],
                recording_id=recording_id, answers=json.dumps(answers),
                comments=json.dumps(comments, ensure_ascii=False), score=total,
            )  # fmt: skip
            s.add(row)
            await s.flush()
            return _eval_dict(row, form.name)

    async def evaluations(
        self, since: datetime, until: datetime, *, agent: str = "", form_id: int | None = None,
        linkedid: str = "",
    ) -> list[dict[str, Any]]:  # fmt: skip
        q = (
            select(QaEvaluation, QaForm.name)
            .join(QaForm, QaForm.id == QaEvaluation.form_id)
            .where(QaEvaluation.created_at >= since, QaEvaluation.created_at < until)
        )
        if agent:
            q = q.where(QaEvaluation.agent == agent)
        if form_id is not None:
            q = q.where(QaEvaluation.form_id == form_id)
        if linkedid:
            q = q.where(QaEvaluation.linkedid == linkedid)
        async with self.db.session() as s:
            rows = (await s.execute(q.order_by(QaEvaluation.id).limit(5000))).all()
            return [_eval_dict(e, name) for e, name in rows]

    async def evaluation(self, eval_id: int) -> dict[str, Any] | None:
        async with self.db.session() as s:
            row = (
                await s.execute(
                    select(QaEvaluation, QaForm.name)
                    .join(QaForm, QaForm.id == QaEvaluation.form_id)
                    .where(QaEvaluation.id == eval_id)
                )
            ).first()
            return _eval_dict(row[0], row[1]) if row is not None else None

    async def acknowledge(self, eval_id: int, agent: str) -> dict[str, Any] | None:
        """The agent saw it (only its own; the first time counts)."""
        async with self.db.session() as s, s.begin():
            row = await s.get(QaEvaluation, eval_id)
            if row is None or row.agent != agent:
                return None
            if row.acknowledged_at is None:
                row.acknowledged_at = datetime.now(UTC)
            form = await s.get(QaForm, row.form_id)
            return _eval_dict(row, form.name if form else "")

    # --- reports -------------------------------------------------------------------------------
    @staticmethod
    def report(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
        """Per agent or per form: evaluations, mean / min / max score, acknowledged."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(str(r["agent"] if by == "agent" else r["form"]), []).append(r)
        out = []
        for key in sorted(groups):
            scores = [float(r["score"]) for r in groups[key]]
            out.append({
                by: key, "evaluations": len(scores),
                "avg_score": round(sum(scores) / len(scores), 2),
                "min_score": min(scores), "max_score": max(scores),
                "acknowledged": sum(1 for r in groups[key] if r["acknowledged_at"]),
            })  # fmt: skip
        return out

    @staticmethod
    def calibration(form: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Several reviewers on the same call and form: each one's points per question,
        and per question and in total the spread (max - min) and standard deviation."""
        qids = list(question_ids(form))
        reviewers = [{"reviewer": r["reviewer"], "score": r["score"],
                      "answers": r["answers"]} for r in rows]  # fmt: skip
        questions = []
        for qid in qids:
            pts = [int(r["answers"][qid]) for r in rows if qid in r["answers"]]
            questions.append({
                "id": qid, "points": pts,
                "spread": (max(pts) - min(pts)) if pts else None,
                "stdev": round(pstdev(pts), 3) if len(pts) > 1 else None,
            })  # fmt: skip
        totals = [float(r["score"]) for r in rows]
        return {
            "form_id": form["id"], "reviewers": reviewers, "questions": questions,
            "score_spread": round(max(totals) - min(totals), 2) if totals else None,
            "score_stdev": round(pstdev(totals), 3) if len(totals) > 1 else None,
        }  # fmt: skip
