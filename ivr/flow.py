"""One caller's walk through the IVR, over a FastAGI session.

The call arrives as ``AGI(${CTI_AGI}/ivr,<dnis>,<linkedid>)``. We recognise the caller,
check the number's schedule, run menus and digit collection, then tell the dialplan what to
do next through channel variables (the dialplan filters them again)::

    CTI_IVR_ACTION  queue | dial | voicemail | hangup
    CTI_IVR_TARGET  queue name | Dial() string | mailbox@context
    CTI_IVR_PATH    menus visited, e.g. main>billing
    CTI_IVR_<NAME>  digits collected by a collect step (e.g. CTI_IVR_ACCOUNT)
    CTI_CUSTOMER_ID, CTI_CUSTOMER_TIER, CTI_OWNER_AGENT  for a recognised caller

The caller's card is looked up first and the session waits for it (bounded by
``lookup_timeout_s``) before the call goes on, with menus or without
(:func:`recognise_caller`): so the card is in the directory's cache before any phone
rings, and the pop carries it (issue #19). A slow or broken directory costs the caller at
most that bound, never the call.

Caller input never reaches a dial string: digits select options or are stored after
validation; numbers and extensions dialled come from the admin's file, validated at load.
A hang-up anywhere is an IVR abandon (:class:`cti.events.IvrAbandoned`).

Calls the system would place pass the dial policy (``Services.dial_policy``) first: a
callback to the caller's number (a caller presenting a premium-rate number is told
"sorry" and waits in the queue instead of being called back) and forwarding to an
external number (refused: the caller goes to the operator queue). Both are logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cti.agi.server import AgiChannelGone, AgiSession
from cti.bus import EventBus
from cti.events import IvrAbandoned, IvrCallbackRequested, IvrChoiceMade, IvrCompleted
from cti.phone import normalize
from cti.services import CustomerCard, Services
from ivr.config import IvrConfig
from ivr.menus import Action, Collect, IvrData, Menu
from ivr.schedule import Override, check

__all__ = ["Loaded", "recognise_caller", "run_call"]

log = logging.getLogger(__name__)

_SAFE_ARG = re.compile(r"[A-Za-z0-9+*#._-]{0,64}")
_AGENT = re.compile(r"[A-Za-z0-9_.@/-]{1,64}")
_TIER = re.compile(r"[A-Za-z0-9_-]{1,32}")
MAX_STEPS = 200  # a caller bouncing between menus forever is cut off
SORRY = "im-sorry"  # Asterisk's core sound


@dataclass(frozen=True)
class Loaded:
    """A validated menu file and the playable name of each prompt."""

    data: IvrData
    playable: dict[str, str]
    source: str = ""
    version: int = 0  # the stored version (ivr.store), 0 when not from the store


@dataclass
class Env:
    loaded: Loaded
    config: IvrConfig
    bus: EventBus
    services: Services
    site_timezone: str
    region: str
    clock: Callable[[], datetime]
    # a supervisor's day/night/emergency state per schedule name (ivr.schedule.Override)
    overrides: Mapping[str, Override] = field(default_factory=dict)


class _Done(Exception):
    def __init__(self, action: Action, reason: str) -> None:
        self.action = action
        self.reason = reason


@dataclass
class CallState:
    linkedid: str
    dnis: str
    caller_raw: str
    caller_e164: str
    channel: str
    path: list[str] = field(default_factory=list)
    collected: dict[str, str] = field(default_factory=dict)
    card: CustomerCard | None = None
    steps: int = 0


async def run_call(agi: AgiSession, env: Env) -> None:
    args = agi.args
    dnis = args[0] if args and _SAFE_ARG.fullmatch(args[0]) else ""
    linkedid = args[1] if len(args) > 1 and _SAFE_ARG.fullmatch(args[1]) else ""
    caller = agi.env.get("agi_callerid", "")
    state = CallState(
        linkedid=linkedid or agi.env.get("agi_uniqueid", "")[:64],
        dnis=dnis,
        caller_raw=caller[:64],
        caller_e164=normalize(caller, env.region),
        channel=agi.env.get("agi_channel", "")[:128],
    )
    try:
        await _run(agi, env, state)
    except AgiChannelGone:
        env.bus.publish(
            IvrAbandoned(
                linkedid=state.linkedid, at=env.clock(), dnis=state.dnis,
                caller_num=state.caller_e164 or state.caller_raw, path=tuple(state.path),
                menu=state.path[-1] if state.path else "",
                collected=tuple(state.collected.items()),
                customer_id=state.card.customer_id if state.card else None,
            )
        )  # fmt: skip
        raise


async def _run(agi: AgiSession, env: Env, state: CallState) -> None:
    data = env.loaded.data
    number = data.numbers.get(state.dnis)
    start = (number.menu if number and number.menu else "") or data.defaults.menu
    schedule_name = (number.schedule if number and number.schedule else "") or (
        data.defaults.schedule
    )
    try:
        await _recognise(agi, env, state)
        if schedule_name:
            verdict = check(
                data.schedules[schedule_name], env.clock(), env.site_timezone,
                env.overrides.get(schedule_name),
            )  # fmt: skip
            if not verdict.open and verdict.action is not None:
                raise _Done(verdict.action, verdict.reason)
        card = state.card
        if card is not None:
            tier_action = data.recognition.tiers.get(card.tier)
            if data.recognition.greeting:
                await agi.stream_file(env.loaded.playable[data.recognition.greeting])
            if tier_action is not None:
                raise _Done(tier_action, "tier")
        if not start:  # no menu yet: hours and recognition only, then the operator queue
            raise _Done(Action(action="operator"), "fallback")
        await _menus(agi, env, state, start)
    except _Done as done:
        await _finish(agi, env, state, done.action, done.reason)


async def recognise_caller(
    services: Services, caller_e164: str, timeout_s: float
) -> CustomerCard | None:
    """The caller's card (None: not a customer, no number, no directory, or no answer
    within ``timeout_s``). The directory caches it (crm_bridge.directory), so every later
    asker of this call, the ringing agent's pop first, gets it from memory."""
    directory = services.customer_directory
    if directory is None or not caller_e164:
        return None
    try:
        return await asyncio.wait_for(directory.lookup_number(caller_e164), timeout_s)
    except Exception as exc:  # a slow or broken directory must not take the call down
        log.warning("customer lookup failed: %s", exc)
        return None


async def _recognise(agi: AgiSession, env: Env, state: CallState) -> None:
    card = await recognise_caller(env.services, state.caller_e164, env.config.lookup_timeout_s)
    if card is None:
        return
    state.card = card
    await agi.set_variable("CTI_CUSTOMER_ID", str(int(card.customer_id)))
    if _TIER.fullmatch(card.tier or ""):
        await agi.set_variable("CTI_CUSTOMER_TIER", card.tier)
    if env.loaded.data.recognition.owner_routing and _AGENT.fullmatch(card.owner_agent or ""):
        await agi.set_variable("CTI_OWNER_AGENT", card.owner_agent)


def _prompt(env: Env, name: str) -> str:
    return env.loaded.playable[name] if name else ""


async def _menus(agi: AgiSession, env: Env, state: CallState, start: str) -> None:
    data = env.loaded.data
    stack = [start]
    state.path.append(start)
    while True:
        name = stack[-1]
        action = await _one_menu(agi, env, state, name, data.menus[name])
        if action.action == "menu":
            stack.append(action.target)
            state.path.append(action.target)
        elif action.action == "back":
            if len(stack) > 1:
                stack.pop()
                state.path.append(stack[-1])
        elif action.action == "repeat":
            continue
        elif action.action == "collect":
            step = data.collect[action.target]
            raise _Done(*await _collect(agi, env, state, action.target, step))
        else:
            raise _Done(action, "choice")


async def _one_menu(agi: AgiSession, env: Env, state: CallState, name: str, menu: Menu) -> Action:
    """Play the menu until a valid digit; the chosen action (or raise the fallback)."""
    misses = 0
    prompt = _prompt(env, menu.greeting)
    while True:
        state.steps += 1
        if state.steps > MAX_STEPS:
            raise _Done(menu.fallback, "fallback")
        digits, _ = await agi.get_data(prompt, int(menu.timeout * 1000), 1)
        digit = digits[:1]
        option = menu.options.get(digit) if digit else None
        if option is not None:
            env.bus.publish(IvrChoiceMade(state.linkedid, env.clock(), name, option.action, digit))
            if option.prompt:
                await agi.stream_file(_prompt(env, option.prompt))
            return option
        misses += 1
        reason = "invalid" if digit else "timeout"
        env.bus.publish(IvrChoiceMade(state.linkedid, env.clock(), name, reason, digit))
        if misses > menu.retries:
            raise _Done(menu.fallback, "fallback")
        notice = menu.invalid if digit else (menu.timeout_prompt or "")
        if notice:
            await agi.stream_file(_prompt(env, notice))


async def _collect(
    agi: AgiSession, env: Env, state: CallState, name: str, step: Collect
) -> tuple[Action, str]:
    misses = 0
    while True:
        digits, _ = await agi.get_data(
            _prompt(env, step.prompt), int(step.timeout * 1000), step.max_length
        )
        if step.valid(digits):
            state.collected[name] = digits
            await agi.set_variable(f"CTI_IVR_{name.upper().replace('-', '_')}", digits)
            env.bus.publish(IvrChoiceMade(state.linkedid, env.clock(), name, "collected", digits))
            return step.then, "collected"
        misses += 1
        env.bus.publish(
            IvrChoiceMade(state.linkedid, env.clock(), name, "invalid", digits[: step.max_length])
        )
        if misses > step.retries:
            return step.fallback, "fallback"
        if step.invalid:
            await agi.stream_file(_prompt(env, step.invalid))


def _dial_target(env: Env, action: Action) -> tuple[str, str]:
    """(dialplan action, target) for a terminal action; values validated at load."""
    cfg, data = env.config, env.loaded.data
    a = action.action
    if a == "queue":
        return "queue", action.target
    if a == "operator":
        return "queue", data.defaults.operator
    if a == "external":
        e164 = normalize(action.target, env.region)
        return "dial", cfg.forward_dial.format(digits=e164.lstrip("+"), e164=e164)
    if a == "extension":
        return "dial", cfg.extension_dial.format(ext=action.target)
    if a == "voicemail":
        return "voicemail", f"{action.target}@{cfg.voicemail_context}"
    return "hangup", ""


async def _dialable(
    agi: AgiSession, env: Env, state: CallState, action: Action, reason: str
) -> tuple[Action, str]:
    """``action``, or the queue instead when it would dial a number the dial policy
    refuses (no policy: nothing is dialled)."""
    if action.action == "callback":
        number, purpose = state.caller_e164, "callback"
    elif action.action == "external":
        number, purpose = normalize(action.target, env.region), "forward"
    else:
        return action, reason
    policy = env.services.dial_policy
    why = "no dial policy is configured"
    if policy is not None and number:
        decision = await policy.check(number, purpose=purpose)
        if decision.allowed:
            return action, reason
        why = decision.reason
    elif not number:
        why = "no number to call back"
    log.warning("IVR %s for %s refused (%s): queued instead", purpose, state.linkedid, why)
    queue = env.loaded.data.defaults.operator
    if action.action == "callback":
        queue = action.target or queue
        await agi.stream_file(SORRY)  # "I'm sorry": the caller waits in the queue instead
    return Action(action="queue", target=queue), "dial_refused"


async def _finish(agi: AgiSession, env: Env, state: CallState, action: Action, reason: str) -> None:
    action, reason = await _dialable(agi, env, state, action, reason)
    if action.prompt:
        await agi.stream_file(_prompt(env, action.prompt))
    if action.action == "callback":
        # Asterisk's own record of the choice: a call recovered from the CDR (daemon
        # restarted meanwhile) is then a callback too, not an IVR abandon
        await agi.set_variable("CDR(cti_outcome)", "callback")
        env.bus.publish(
            IvrCallbackRequested(
                state.linkedid, env.clock(), state.caller_e164,
                action.target or env.loaded.data.defaults.operator,
                tuple(state.collected.items()),
            )
        )  # fmt: skip
    what, target = _dial_target(env, action)
    await agi.set_variable("CTI_IVR_PATH", ">".join(state.path)[:512])
    await agi.set_variable("CTI_IVR_TARGET", target)
    await agi.set_variable("CTI_IVR_ACTION", what)
    card = state.card
    env.bus.publish(
        IvrCompleted(
            linkedid=state.linkedid, at=env.clock(), dnis=state.dnis,
            caller_num=state.caller_e164 or state.caller_raw, channel=state.channel,
            path=tuple(state.path), action=what, target=target, reason=reason,
            collected=tuple(state.collected.items()),
            customer_id=card.customer_id if card else None,
            owner_agent=card.owner_agent if card else "",
        )
    )  # fmt: skip
