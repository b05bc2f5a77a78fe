"""Render the queue parameters kept in the store into ``queues_cti.conf``.

The shipped ``queues.conf`` ``#tryinclude``s this file *before* its own ``[support]`` and
``[sales]`` (defaults, so those exist before the daemon ever ran): app_queue reads a
queue's parameters from the first category of that name. Every category here is
complete, without a template: app_queue takes ``strategy`` from the first occurrence of
the key, so a template's value would win over ours. Names and values are validated
before they get here (:mod:`acd.store`); nothing free-form reaches the file.

The daemon does not write the file: :func:`config_file` describes it and the ACD pushes it
to Asterisk over AMI (cti.ami.config_push, decision 0031), which writes it into its own
configuration directory; :func:`render` is the same content as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cti.ami.config_push import Category, ConfigFile, render_text

__all__ = [
    "BASE_FILE",
    "BUILTIN_QUEUES",
    "FILE_NAME",
    "OWNER_QUEUE_PREFIX",
    "QueueParams",
    "config_file",
    "owner_queue",
    "render",
]

FILE_NAME = "queues_cti.conf"
#: the empty file the instance generation ships (dialplans/): each push starts from it
BASE_FILE = "cti_empty.conf"
BUILTIN_QUEUES = ("support", "sales")
#: Queue names the daemon keeps for itself (configured queues may not start with it).
RESERVED_PREFIX = "cti_"
#: Each agent's personal queue (only that agent is a member): owner-first routing rings
#: the owner through app_queue, so the attempt shows in queue_log, AgentCalled pops it
#: and the agent's statistics count it (docs/decisions/0010-acd-routing.md).
OWNER_QUEUE_PREFIX = "cti_owner_"
#: joinempty/leavewhenempty of personal queues: only an owner who can take it now
_OWNER_EMPTY = "paused,penalty,inuse,ringing,unavailable,invalid,unknown,wrapup"


def owner_queue(agent_id: int) -> str:
    return f"{OWNER_QUEUE_PREFIX}{int(agent_id)}"


@dataclass(frozen=True, slots=True)
class QueueParams:
    name: str
    strategy: str = "rrmemory"
    timeout_s: int = 15
    retry_s: int = 2
    wrapup_s: int = 0
    max_wait_s: int = 300
    max_len: int = 0
    join_empty: bool = True
    leave_empty: bool = False
    music_class: str = "default"
    announce_position: bool = False
    announce_holdtime: bool = False
    announce_frequency_s: int = 0
    service_level_s: int = 20
    short_abandon_s: int = 5
    overflow_after_s: int | None = None
    overflow_queue: str = ""
    owner_ring_s: int = 0
    overflow_action: str = ""  # "" = "queue" when overflow_queue is set, else none
    overflow_mailbox: str = ""
    callback_key: str = ""
    #: a sound played to waiting callers every ``periodic_announce_s`` (0: never):
    #: an Asterisk sound name or an absolute path without extension (an IVR prompt)
    periodic_announce: str = ""
    periodic_announce_s: int = 0
    #: after-call work: after each call the agent stays paused (reason ``wrapup``) until
    #: the call's disposition is saved or this many seconds pass (0: none; acd.wrapup)
    acw_max_s: int = 0
    #: the language callers of this queue hear (survey, announcements): "zh" or "en"
    language: str = "zh"
    #: after the agent hangs up, the caller is asked for a 1-5 score (quality feature)
    survey: bool = False

    @property
    def overflow(self) -> str:
        """The overflow action in effect: "", "queue", "voicemail" or "callback"."""
        if self.overflow_action:
            return self.overflow_action
        return "queue" if self.overflow_queue else ""


# what the shipped queue-defaults template sets besides the per-queue parameters
_FIXED = (
    "ringinuse = no",
    "periodic-announce-frequency = 0",
    "setinterfacevar = yes",
    "setqueueentryvar = yes",
    "setqueuevar = yes",
    "reportholdtime = no",
)
#: the dialplan context app_queue exits to when a waiting caller presses ``key``
#: (extensions_acd.conf has one context per digit, each with only that extension)
KEY_CONTEXT = "cti-acd-key-{key}"
#: app_queue's wrapuptime floor in queues with after-call work: covers the moment
#: between the call's end and the daemon's QueuePause (no new call slips in)
ACW_GUARD_S = 2


#: app_queue's per-queue announcement sounds the ACD sets (acd.prompts)
ANNOUNCE_OPTIONS = frozenset({
    "queue-youarenext", "queue-thereare", "queue-callswaiting", "queue-holdtime",
    "queue-minutes", "queue-minute", "queue-seconds", "queue-thankyou",
})  # fmt: skip
#: a sound as the file may hold it (a name, an absolute path, or an http(s) URL Asterisk's
#: media cache fetches, ivr.media: no ",", no ";", no line break)
_SOUND = re.compile(
    r"(?:https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?)?/?[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}"
)


def _yn(value: bool) -> str:
    return "yes" if value else "no"


def render(
    queues: Iterable[QueueParams],
    owner_agents: Iterable[int] = (),
    *,
    callback_prompt: str = "",
    callback_announce_s: int = 0,
    phrases: Mapping[str, Mapping[str, str]] | None = None,
    callback_sounds: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """:func:`config_file`'s categories as the text Asterisk writes."""
    conf = config_file(
        queues, owner_agents, callback_prompt=callback_prompt,
        callback_announce_s=callback_announce_s, phrases=phrases,
        callback_sounds=callback_sounds,
    )  # fmt: skip
    head = "; queues_cti.conf: pushed by the cti daemon (acd) from its store\n\n"
    return head + render_text(conf.categories)


def _category(lines: list[str]) -> Category:
    """``[name]`` then ``key = value`` lines (all made here) as a category."""
    options = [line.partition(" = ") for line in lines[1:]]
    return Category(lines[0][1:-1], tuple((key, value) for key, _, value in options))


def config_file(
    queues: Iterable[QueueParams],
    owner_agents: Iterable[int] = (),
    *,
    callback_prompt: str = "",
    callback_announce_s: int = 0,
    phrases: Mapping[str, Mapping[str, str]] | None = None,
    callback_sounds: Mapping[tuple[str, str], str] | None = None,
) -> ConfigFile:
    """``owner_agents``: agent ids that get a personal queue; ``callback_prompt`` is
    announced every ``callback_announce_s`` in queues with a callback key (else the
    queue's language's spoken offer from ``callback_sounds``, by (language, key));
    ``phrases``: per language, app_queue's announcement sounds (acd.prompts)."""
    phrases = phrases or {}
    callback_sounds = callback_sounds or {}
    cats: list[Category] = []
    for q in sorted(queues, key=lambda q: q.name):
        fixed = list(_FIXED)
        fixed.remove("periodic-announce-frequency = 0")
        # periodic announcements: the queue's own, then the callback offer (in turn)
        sounds: list[str] = []
        every = 0
        if q.periodic_announce and q.periodic_announce_s > 0:
            sounds.append(q.periodic_announce)
            every = q.periodic_announce_s
        if q.callback_key:
            fixed.append(f"context = {KEY_CONTEXT.format(key=q.callback_key)}")
            offer = callback_prompt or callback_sounds.get((q.language, q.callback_key), "")
            if offer and _SOUND.fullmatch(offer) and callback_announce_s > 0:
                sounds.append(offer)
                every = every or callback_announce_s
        spoken = phrases.get(q.language, {}) if q.announce_position or q.announce_holdtime else {}
        for option, sound in sorted(spoken.items()):
            if option in ANNOUNCE_OPTIONS and _SOUND.fullmatch(sound):
                fixed.append(f"{option} = {sound}")
        if sounds:
            fixed += [
                f"periodic-announce = {','.join(sounds)}",
                f"periodic-announce-frequency = {every}",
            ]
        else:
            fixed.append("periodic-announce-frequency = 0")
        cats.append(_category([
            f"[{q.name}]",
            f"strategy = {q.strategy}",
            f"timeout = {q.timeout_s}",
            f"retry = {q.retry_s}",
            f"wrapuptime = {max(q.wrapup_s, ACW_GUARD_S) if q.acw_max_s else q.wrapup_s}",
            f"maxlen = {q.max_len}",
            # "yes" lets callers in with no member; "strict" refuses when all are
            # paused/unavailable too (join-empty means nobody could answer)
            f"joinempty = {'yes' if q.join_empty else 'paused,unavailable,invalid'}",
            f"leavewhenempty = {'paused,unavailable,invalid' if q.leave_empty else 'no'}",
            f"musicclass = {q.music_class}",
            f"announce-position = {_yn(q.announce_position)}",
            f"announce-holdtime = {_yn(q.announce_holdtime)}",
            f"announce-frequency = {q.announce_frequency_s}",
            f"servicelevel = {q.service_level_s}",
            *fixed,
        ]))  # fmt: skip
    for agent_id in sorted(set(owner_agents)):
        cats.append(_category([
            f"[{owner_queue(agent_id)}]",
            "strategy = ringall",
            "timeout = 600",  # the Queue() timeout argument (owner_ring_s) limits it
            "retry = 1",
            "wrapuptime = 0",
            "maxlen = 0",
            f"joinempty = {_OWNER_EMPTY}",
            f"leavewhenempty = {_OWNER_EMPTY}",
            "musicclass = default",
            "announce-position = no",
            "announce-holdtime = no",
            "announce-frequency = 0",
            "servicelevel = 20",
            *_FIXED,
        ]))  # fmt: skip
    return ConfigFile(FILE_NAME, BASE_FILE, tuple(cats))
