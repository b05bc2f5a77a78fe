"""The satisfaction survey (满意度评价) after a queue call: FastAGI ``quality-survey``.

The dialplan ([cti-survey], dialplans/extensions.conf) hands over: the queue, its language,
the agent (MEMBERNAME), the caller channel's Uniqueid (the queue entry's queue_log callid)
and the Linkedid. The question is spoken in the queue's language (the IVR's text-to-speech
through ``cti.services.PromptSpeaker``; Asterisk's ``beep`` when there is none); one key
is read. 1-5 is the score; anything else (another key, ``*``/``#``, nothing) asks again,
up to ``survey_attempts`` times, then the call ends without a score. Every argument is
checked against a strict pattern: a channel variable is never trusted.

A score is kept three ways: a ``SURVEY`` line in Asterisk's queue_log (AMI QueueLog, so
statistics derive it like every other figure), the quality store (``quality_surveys``),
and :class:`cti.events.SurveyAnswered` for the CRM interaction and the desktop.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from cti.agi.server import AgiChannelGone, AgiError, AgiSession
from cti.services import PromptSpeaker
from quality.config import DEFAULT_TEXTS, QualityConfig

__all__ = ["ROUTE", "SCORES", "SurveyCall", "parse_args", "run_survey"]

log = logging.getLogger(__name__)

ROUTE = "quality-survey"
SCORES = ("1", "2", "3", "4", "5")
FALLBACK_SOUND = "beep"
_QUEUE = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
_AGENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True, slots=True)
class SurveyCall:
    queue: str
    language: str
    agent: str
    callid: str
    linkedid: str


def parse_args(args: list[str]) -> SurveyCall | None:
    """The dialplan's arguments, or None when any is missing or malformed."""
    if len(args) < 5:
        return None
    queue, language, agent, callid, linkedid = (a.strip() for a in args[:5])
    if language not in DEFAULT_TEXTS:
        return None
    if not (_QUEUE.fullmatch(queue) and _AGENT.fullmatch(agent)):
        return None
    if not (_ID.fullmatch(callid) and _ID.fullmatch(linkedid)):
        return None
    return SurveyCall(queue, language, agent, callid, linkedid)


Record = Callable[[SurveyCall, int, datetime], Awaitable[None]]


async def _sound(speaker: PromptSpeaker | None, text: str, language: str) -> str:
    if speaker is None:
        return FALLBACK_SOUND
    try:
        return await speaker.speak(text, language)
    except RuntimeError as exc:
        log.warning("survey prompt not rendered (%s): %s", language, exc)
        return FALLBACK_SOUND


async def run_survey(
    agi: AgiSession,
    config: QualityConfig,
    speaker: PromptSpeaker | None,
    record: Record,
    clock: Callable[[], datetime],
    asking: Callable[[str, int], None] = lambda linkedid, attempt: None,
) -> int | None:
    """Ask, read, record; the score, or None (no valid key, bad arguments, hang-up)."""
    call = parse_args(list(agi.args))
    if call is None:
        log.warning("survey: refused arguments %r", [a[:70] for a in agi.args[:5]])
        return None
    texts = config.survey_texts.get(call.language) or DEFAULT_TEXTS[call.language]
    question = await _sound(speaker, texts.question, call.language)
    invalid = await _sound(speaker, texts.invalid, call.language)
    timeout_ms = int(config.survey_timeout_s * 1000)
    try:
        for attempt in range(config.survey_attempts):
            asking(call.linkedid, attempt + 1)
            digits, _ = await agi.get_data(question, timeout_ms, 1)
            if digits in SCORES:
                score = int(digits)
                await record(call, score, clock())
                thanks = await _sound(speaker, texts.thanks, call.language)
                try:
                    await agi.stream_file(thanks)
                except AgiChannelGone:
                    pass  # recorded: the caller need not hear the thanks
                return score
            if attempt + 1 < config.survey_attempts:
                await agi.stream_file(invalid)
    except AgiChannelGone:
        return None
    except AgiError as exc:
        log.warning("survey of %s: %s", call.linkedid, exc)
    return None
