"""The daemon's AMI session carries only the events its handlers read (decision 0027).

Against the real Asterisk: a client whose handlers name their events asks Asterisk
(``Filter``, per session) for those only; a client beside it on the same account, whose
handler names none, still gets every event of its classes; list actions (their items
are answers, not events) still return everything; and the filter is set again after a
reconnect (a session's filters die with it).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from cti.ami.client import AmiClient
from cti.asterisk.instance import ChrootAsterisk
from cti.calls.model import HANDLED_EVENTS
from tests.acceptance.harness import ami_client, originate_call, wait_for
from tests.acceptance.proxy import CuttableProxy


async def _one_call(ami: AmiClient, *seen: Counter[str]) -> None:
    linkedid = await originate_call(ami, hold_s=1)

    async def hung_up() -> bool:
        return all(s["Hangup"] >= 2 for s in seen) and not any(
            linkedid in (c.get("Linkedid") or "")
            for c in (await ami.send_list_action("CoreShowChannels"))[1]
        )

    await wait_for(hung_up, timeout=30, what="the call's legs to end")


async def test_named_events_only_and_other_sessions_untouched(
    asterisk: ChrootAsterisk, ami: AmiClient
) -> None:
    filtered, everything = ami_client(asterisk), ami_client(asterisk)
    got: Counter[str] = Counter()
    all_events: Counter[str] = Counter()
    filtered.add_event_handler(lambda m: got.update([m.event or ""]), events=HANDLED_EVENTS)
    everything.add_event_handler(lambda m: all_events.update([m.event or ""]))
    try:
        for client in (filtered, everything):
            await client.start()
            await client.wait_connected(timeout=15)
        await asyncio.sleep(0.5)  # what was queued before the filter
        got.clear()
        all_events.clear()
        await _one_call(ami, got, all_events)

        assert got, "the filtered session got no event"
        assert set(got) <= HANDLED_EVENTS, set(got) - HANDLED_EVENTS
        unread = set(all_events) - HANDLED_EVENTS
        assert unread, all_events  # the call raises events nobody reads (DialState...)
        assert sum(got.values()) < sum(all_events.values())
        for name in got:  # nothing the handlers read is lost
            assert got[name] == all_events[name], (name, got, all_events)

        # list answers are not filtered: a CoreShowChannels item is no event we named
        _, items = await filtered.send_list_action("QueueStatus")
        assert any(i.event == "QueueParams" for i in items)
    finally:
        await filtered.close()
        await everything.close()


async def test_filter_is_set_again_after_a_reconnect(
    asterisk: ChrootAsterisk, ami: AmiClient
) -> None:
    proxy = CuttableProxy(asterisk.spec.ami_port)
    await proxy.start()
    filtered = ami_client(asterisk, proxy.port)
    got: Counter[str] = Counter()
    filtered.add_event_handler(lambda m: got.update([m.event or ""]), events={"Hangup"})
    logins: list[bool] = []

    async def on_login(is_reconnect: bool) -> None:
        logins.append(is_reconnect)

    filtered.add_connected_handler(on_login)
    try:
        await filtered.start()
        await filtered.wait_connected(timeout=15)
        proxy.cut(refuse=False)  # the session ends; the client logs in again

        async def back() -> bool:
            return True in logins and filtered.connected

        await wait_for(back, timeout=30, what="the session back")
        await asyncio.sleep(0.5)
        got.clear()
        linkedid = await originate_call(ami, hold_s=1)

        async def ended() -> bool:
            return got["Hangup"] >= 2

        await wait_for(ended, timeout=30, what=f"{linkedid}'s hang-ups")
        assert set(got) == {"Hangup"}, got
    finally:
        await filtered.close()
        await proxy.close()
