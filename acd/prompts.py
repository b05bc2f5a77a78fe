"""What waiting callers hear, in their queue's language (decision 0026).

app_queue's position and hold-time announcements are made of per-queue sounds
(``queue-youarenext``, ``queue-thereare`` + the position + ``queue-callswaiting``,
``queue-holdtime`` + minutes + ``queue-minutes``...) and numbers said in the channel's
language. Each phrase is spoken by the IVR's text-to-speech (cti.services.PromptSpeaker)
and written into queues_cti.conf for the queues of that language; Mandarin numbers are
the ``zh/digits/*`` sounds Asterisk's Chinese number syntax plays (0-9, the tens,
百 千 万 亿), rendered the same way; the dialplan sets the caller's channel language to
the queue's (``CTI_LANG_<queue>``). The callback offer ("press N to be called back") is
spoken per language and key. English numbers are Asterisk's own ``digits/*``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from cti.asterisk.sounds import LANGUAGE_SOUNDS
from cti.services import PromptSpeaker

__all__ = ["PHRASES", "QueueSounds", "render_sounds"]

log = logging.getLogger(__name__)

#: app_queue's sound options, per language
PHRASES: dict[str, dict[str, str]] = {
    "zh": {
        "queue-youarenext": "您是下一位。马上为您接通。",
        "queue-thereare": "您前面还有",
        "queue-callswaiting": "位客户在等待。",
        "queue-holdtime": "预计等待时间约为",
        "queue-minutes": "分钟。",
        "queue-minute": "分钟。",
        "queue-seconds": "秒。",
        "queue-thankyou": "感谢您的耐心等待。",
    },
    "en": {
        "queue-youarenext": "You are next in line.",
        "queue-thereare": "There are",
        "queue-callswaiting": "callers ahead of you.",
        "queue-holdtime": "The estimated wait is about",
        "queue-minutes": "minutes.",
        "queue-minute": "minute.",
        "queue-seconds": "seconds.",
        "queue-thankyou": "Thank you for waiting.",
    },
}
CALLBACK_OFFER = {"zh": "如需回电请按{key}。", "en": "To be called back, press {key}."}
#: the sounds Asterisk's Chinese number syntax plays (main/say.c, zh): built into the
#: Asterisk root; written again only where a node has an ``[ivr] sounds_dir``
ZH_NUMBERS: dict[str, str] = LANGUAGE_SOUNDS["zh"][1]


@dataclass
class QueueSounds:
    #: language -> app_queue sound option -> playable name
    phrases: dict[str, dict[str, str]] = field(default_factory=dict)
    #: (language, key) -> the callback offer's playable name
    callback: dict[tuple[str, str], str] = field(default_factory=dict)

    def names(self) -> set[str]:
        """Every playable name (what the speaker is told the queues play)."""
        return {n for p in self.phrases.values() for n in p.values()} | set(self.callback.values())


async def render_sounds(
    speaker: PromptSpeaker | None,
    languages: Iterable[str],
    callback_keys: Iterable[tuple[str, str]],
) -> QueueSounds:
    """The sounds of ``languages`` and the callback offers of (language, key); what cannot
    be rendered is left out (app_queue then plays its own)."""
    out = QueueSounds()
    if speaker is None:
        return out
    for lang in sorted(set(languages)):
        texts = PHRASES.get(lang)
        if texts is None:
            continue
        try:
            out.phrases[lang] = {k: await speaker.speak(t, lang) for k, t in texts.items()}
            if lang == "zh":
                for name, text in ZH_NUMBERS.items():
                    await speaker.language_sound(text, lang, name)
        except RuntimeError as exc:
            log.warning("queue announcements in %s not rendered: %s", lang, exc)
            out.phrases.pop(lang, None)
    for lang, key in sorted(set(callback_keys)):
        offer = CALLBACK_OFFER.get(lang)
        if offer is None:
            continue
        try:
            out.callback[(lang, key)] = await speaker.speak(offer.format(key=key), lang)
        except RuntimeError as exc:
            log.warning("callback offer in %s not rendered: %s", lang, exc)
    return out
