"""A node whose prompt directory Asterisk cannot see (a node on another host; decision
0032): what it renders is played from its HTTP by res_http_media_cache. The node's
``[ivr] prompt_dir`` is a directory of its own outside Asterisk's root, no
``sounds_dir``, and ``media_url`` names its HTTP; Asterisk fetches each URL (the node's
media counter says so) and plays it (its verbose log channel names every file played).

- an IVR greeting (text-to-speech) is played to an inbound caller;
- a Mandarin queue's position announcement: our ``queue-thereare`` /
  ``queue-callswaiting`` URLs from queues_cti.conf, and between them ``digits/2`` in
  language zh from the Mandarin sounds built into the Asterisk root.

On SQLite only (harness.SQLITE_ONLY): nothing here depends on the store's server."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from acd import store as acd_store
from acd.feature import AcdFeature
from acd.queues_conf import FILE_NAME
from cti.ami.client import AmiClient
from cti.ami.protocol import Message
from cti.asterisk import sounds
from cti.asterisk.instance import ChrootAsterisk
from cti.config import HttpConfig
from cti.daemon import Daemon
from cti.events import IvrCompleted
from cti.features import Feature
from ivr.feature import IvrFeature
from ivr.media import MediaServer, MediaSigner, media_key
from ivr.media_cache import MediaCache
from ivr.menus import Prompt
from ivr.prompts import VOICES
from quality.config import DEFAULT_TEXTS
from quality.feature import QualityFeature
from tests.acceptance.conftest import daemon_settings
from tests.acceptance.harness import SQLITE_ONLY, ami_client, free_port, wait_for
from tests.acceptance.test_ivr_harness import call
from tests.acceptance.test_queue_prompts import configured, sip_caller

GREETING = "Welcome to the support line."
MENUS = f"""\
[defaults]
menu = "main"
operator = "support"

[prompts]
hello = {{ text = "{GREETING}", voice = "en" }}

[menus.main]
greeting = "hello"
timeout = 1
retries = 0
fallback = {{ action = "queue", target = "support" }}
"""


class Nodes:
    """Daemons with the ACD and the IVR whose prompts live where Asterisk cannot look
    (one ``prompt_dir`` for all of them, as one node restarted)."""

    def __init__(self, asterisk: ChrootAsterisk, db_url: str, tmp_path: Path) -> None:
        self.asterisk, self.db_url, self.tmp_path = asterisk, db_url, tmp_path
        self.prompts = tmp_path / "node-only-prompts"
        self.running: list[Daemon] = []

    async def __call__(
        self, menus: str = "", *, port: int = 0, media_secret: str = "", survey: bool = False
    ) -> tuple[Daemon, IvrFeature]:
        menus_file = self.tmp_path / "menus.toml"
        if menus:
            menus_file.write_text(menus)
        port = port or free_port()
        settings = daemon_settings(
            self.asterisk, self.db_url, acd={"asterisk_etc_dir": str(self.asterisk.etc_dir)},
            ivr={"menus": str(menus_file), "prompt_dir": str(self.prompts),
                 "media_url": f"http://127.0.0.1:{port}", "media_secret": media_secret,
                 "forward_dial": "Local/{digits}@cti-sim-agents/n"},
        ).model_copy(update={"http": HttpConfig(port=port)})  # fmt: skip
        ivr = IvrFeature()
        features: list[Feature] = [AcdFeature(), ivr, *([QualityFeature()] if survey else [])]
        daemon = Daemon(settings, features=features)
        await daemon.start()
        self.running.append(daemon)
        await daemon.ami.wait_connected(timeout=15)
        return daemon, ivr

    async def stop(self, daemon: Daemon) -> None:
        self.running.remove(daemon)
        await daemon.stop()


@pytest.fixture
async def node(
    asterisk: ChrootAsterisk, db_url: str, ami: AmiClient, tmp_path: Path
) -> AsyncIterator[Nodes]:
    nodes = Nodes(asterisk, db_url, tmp_path)
    assert not nodes.prompts.resolve().is_relative_to(asterisk.root.resolve())
    yield nodes
    for daemon in list(nodes.running):
        await nodes.stop(daemon)
    (asterisk.etc_dir / FILE_NAME).unlink(missing_ok=True)
    await ami.send_action("QueueReload", {"Parameters": "yes"})
    await asyncio.to_thread(asterisk.cli, "channel request hangup all")


async def cached(asterisk: ChrootAsterisk) -> set[str]:
    """The URLs in Asterisk's media cache (``media cache show all``)."""
    out = await asyncio.to_thread(asterisk.cli, "media cache show all")
    return {ln.strip() for ln in out.splitlines() if ln.strip().startswith("http")}


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


@SQLITE_ONLY
async def test_an_ivr_greeting_is_played_from_the_node_over_http(
    asterisk: ChrootAsterisk, ami: AmiClient, node: Nodes, played: Path
) -> None:
    daemon, ivr = await node(MENUS)
    assert ivr.media is not None and ivr.loaded is not None
    url = ivr.loaded.playable["hello"]
    assert url.startswith(f"http://127.0.0.1:{daemon.http_port}/media/v1/"), url
    name = url.rsplit("/", 1)[1].removesuffix(".wav")
    assert (ivr.config.prompt_dir / f"{name}.wav").is_file()  # rendered on the node only
    # fetched by Asterisk before any call (ivr.media_cache): no caller waits for it
    assert ivr.media_cache is not None
    await ivr.media_cache.settled(timeout=30)
    assert url in await cached(asterisk)
    fetched = ivr.media.counts.get("served", 0)
    assert fetched >= 1, ivr.media.counts

    events: list[IvrCompleted] = []
    daemon.bus.subscribe(IvrCompleted, events.append)
    linkedid = await call(ami, hold_s=8)

    async def completed() -> list[IvrCompleted]:
        return [e for e in events if e.linkedid == linkedid]

    await wait_for(completed, timeout=30, what="the IVR to finish the greeting")
    assert ivr.media.counts.get("served", 0) == fetched, ivr.media.counts  # no fetch in the call
    lines = await asyncio.to_thread(_lines, played)
    playing = [ln for ln in lines if "Playing '" in ln and url in ln]
    assert playing, "\n".join(lines[-40:])
    assert not [ln for ln in lines if url in ln and re.search(r"WARNING|Unable", ln)], lines


@SQLITE_ONLY
async def test_asterisk_keeps_the_nodes_prompts_over_restarts_and_forgets_replaced_ones(
    asterisk: ChrootAsterisk, node: Nodes
) -> None:
    """No setting: the URLs are signed by the store's key, so a restarted node names the
    same URLs and Asterisk fetches nothing again; a prompt replaced (a menus edit, also
    while the node was down) leaves Asterisk's cache, and so do the entries of a previous
    key (a secret dropped)."""
    port = free_port()
    daemon, ivr = await node(MENUS, port=port, media_secret="the-old-secret")
    assert ivr.loaded is not None and ivr.media_cache is not None
    old_key_url = ivr.loaded.playable["hello"]
    await ivr.media_cache.settled(timeout=30)
    assert old_key_url in await cached(asterisk)
    await node.stop(daemon)

    daemon, ivr = await node(MENUS, port=port)  # the store's key from now on
    assert ivr.loaded is not None and ivr.media_cache is not None and ivr.media is not None
    url = ivr.loaded.playable["hello"]
    assert url != old_key_url and url.rsplit("/", 1)[1] == old_key_url.rsplit("/", 1)[1]
    await ivr.media_cache.settled(timeout=30)
    now = await cached(asterisk)
    assert url in now and old_key_url not in now, now

    (node.tmp_path / "menus.toml").write_text(MENUS.replace(GREETING, "We moved."))
    await ivr.reload()
    edited = ivr.loaded.playable["hello"]
    await ivr.media_cache.settled(timeout=30)
    now = await cached(asterisk)
    assert edited in now and url not in now, now
    assert ivr.media_cache.counts.get("deleted", 0) >= 1, ivr.media_cache.counts
    await node.stop(daemon)

    daemon, ivr = await node(port=port)  # a restart: nothing new for Asterisk
    assert ivr.loaded is not None and ivr.media_cache is not None and ivr.media is not None
    assert ivr.loaded.playable["hello"] == edited
    await ivr.media_cache.settled(timeout=30)
    assert edited in await cached(asterisk)
    assert ivr.media_cache.counts.get("refreshed", 0) >= 1, ivr.media_cache.counts
    assert ivr.media.counts == {}, ivr.media.counts  # Asterisk asked for nothing
    await node.stop(daemon)

    # the greeting changed while no node ran: the node cannot name the old URL, but once
    # every group (menus, queues) said what it plays, what none plays leaves the cache
    (node.tmp_path / "menus.toml").write_text(MENUS.replace(GREETING, "Changed meanwhile."))
    daemon, ivr = await node(port=port)
    assert ivr.loaded is not None and ivr.media_cache is not None
    latest = ivr.loaded.playable["hello"]
    await ivr.media_cache.settled(timeout=30)
    now = await cached(asterisk)
    assert latest in now and edited not in now, now


@SQLITE_ONLY
async def test_the_survey_prompts_are_in_asterisks_cache_before_the_first_survey(
    asterisk: ChrootAsterisk, node: Nodes
) -> None:
    """The survey's questions are spoken at the call: the node speaks them at start too,
    so Asterisk has them before the first caller rates anyone."""
    daemon, ivr = await node(survey=True)
    expected = {
        ivr.store.playable(Prompt(text=t, voice=VOICES[lang]))
        for lang, x in DEFAULT_TEXTS.items() for t in (x.question, x.invalid, x.thanks)
    }  # fmt: skip
    assert all(u.startswith(f"http://127.0.0.1:{daemon.http_port}/") for u in expected)

    async def warmed() -> bool:
        return expected <= await cached(asterisk)

    await wait_for(warmed, timeout=60, what="the survey prompts in Asterisk's cache")


async def test_a_prompt_asterisk_could_not_fetch_yet_is_fetched_again(
    asterisk: ChrootAsterisk, tmp_path: Path
) -> None:
    """Asterisk just restarted (res_http_media_cache not loaded yet) or the node was slow:
    the refresh fails, and is tried again a little later, not only at the first play."""
    port = free_port()
    signer = MediaSigner(media_key("retry"), f"http://127.0.0.1:{port}")
    server = MediaServer(signer, tmp_path)
    app = web.Application()
    server.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    cache = MediaCache(ami_client(asterisk), signer)
    cache.retry_s = 0.5
    name = "ab" * 20
    url = signer.url(name)
    try:
        await cache.start()
        cache.plays("menus", [url])  # not there yet: Asterisk gets a 404

        async def failed() -> int:
            return cache.counts.get("refresh-failed", 0)

        await wait_for(failed, timeout=20, what="the first refresh to fail")
        wav = await asyncio.to_thread(sounds.render_wav, "Hello.", "en")
        (tmp_path / f"{name}.wav").write_bytes(wav)
        await cache.settled(timeout=20)
        assert cache.counts.get("refreshed") == 1, cache.counts
        assert url in await cached(asterisk)
    finally:
        cache.plays("menus", [])  # out of the session Asterisk's cache again
        await cache.settled(timeout=20)
        await cache.close()
        await runner.cleanup()


async def test_an_ami_account_without_the_command_class_is_told_once_per_connection(
    asterisk: ChrootAsterisk, tmp_path: Path
) -> None:
    """An Asterisk whose manager.conf predates the 'command' class: Permission denied,
    one refusal per connection, nothing else sent (prompts are fetched at first play)."""
    manager = asterisk.etc_dir / "manager.conf"
    original = manager.read_text()
    secret = secrets.token_hex(16)
    manager.write_text(
        original + f"\n[nocmd]\nsecret = {secret}\ndeny = 0.0.0.0/0.0.0.0\n"
        "permit = 127.0.0.1/255.255.255.255\nread = system\nwrite = system\n"
    )
    await asyncio.to_thread(asterisk.cli, "manager reload")
    signer = MediaSigner(media_key("nocmd"), f"http://127.0.0.1:{free_port()}")
    ami = AmiClient("127.0.0.1", asterisk.spec.ami_port, "nocmd", secret, events="off")
    cache = MediaCache(ami, signer)
    try:
        await cache.start()
        await ami.wait_connected(timeout=10)
        cache.plays("menus", [signer.url("cd" * 20)])
        await cache.settled(timeout=20)
        assert cache.counts == {"refused": 1}, cache.counts
        cache.plays("menus", [signer.url("ef" * 20)])  # replaced: a delete would be due
        await cache.settled(timeout=20)
        assert cache.counts == {"refused": 1}, cache.counts
    finally:
        await cache.close()
        manager.write_text(original)
        await asyncio.to_thread(asterisk.cli, "manager reload")


@SQLITE_ONLY
async def test_a_mandarin_queue_announcement_is_played_from_the_node_over_http(
    asterisk: ChrootAsterisk, ami: AmiClient, node: Nodes, played: Path, tmp_path: Path
) -> None:
    assert sounds.installed(asterisk.root)  # built into the root by the runner
    daemon, ivr = await node()
    assert ivr.media is not None
    acd = next(f for f in daemon.features if isinstance(f, AcdFeature))
    assert acd.service is not None
    params = {"language": "zh", "announce_position": True, "announce_frequency_s": 4,
              "max_wait_s": 120}  # fmt: skip
    await acd_store.put_queue(acd.service.db, acd_store.queue_params("support", params))
    await acd.service.apply_queues()
    spoken = configured(asterisk.etc_dir, "support")
    base = f"http://127.0.0.1:{daemon.http_port}/media/v1/"
    assert spoken and all(v.startswith(base) for v in spoken.values()), spoken
    thereare, callswaiting = spoken["queue-thereare"], spoken["queue-callswaiting"]
    assert ivr.media_cache is not None
    await ivr.media_cache.settled(timeout=30)
    assert {thereare, callswaiting} <= await cached(asterisk)  # before the first caller

    seen: list[Message] = []
    ami.add_event_handler(seen.append)
    procs = []
    try:
        for number in ("13822230001", "13822230002"):
            procs.append(await sip_caller(asterisk, number, tmp_path))

            async def joined(number: str = number) -> list[Message]:
                return [m for m in seen if m.event == "QueueCallerJoin"
                        and m.get("CallerIDNum") == number]  # fmt: skip

            await wait_for(joined, timeout=20, what=f"{number} waiting")
        second = next(m for m in seen if m.event == "QueueCallerJoin"
                      and m.get("CallerIDNum") == "13822230002")  # fmt: skip
        channel = second["Channel"]

        async def whole_announcement() -> list[str]:
            lines = await asyncio.to_thread(_lines, played)
            mine = [ln for ln in lines if channel in ln and "Playing" in ln]
            return mine if callswaiting in "\n".join(mine) else []

        try:
            heard = await wait_for(whole_announcement, timeout=25, what="the announcement")
        except AssertionError:
            log = "\n".join((await asyncio.to_thread(_lines, played))[-60:])
            raise AssertionError(f"{channel} never heard it; played log:\n{log}") from None
    finally:
        ami.remove_event_handler(seen.append)
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    text = "\n".join(heard)
    at = [text.find(x) for x in (thereare, "digits/2", callswaiting)]
    assert all(i >= 0 for i in at) and at == sorted(at), text
    assert "(language 'zh')" in next(ln for ln in heard if "digits/2" in ln), text
    assert ivr.media.counts.get("served", 0) >= 2, ivr.media.counts  # both URLs fetched
    log = "\n".join(await asyncio.to_thread(_lines, played))
    assert not re.search(r"zh/digits/\S+ does not exist|File digits/2 does not exist", log), log
