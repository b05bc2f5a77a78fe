"""Asterisk's media cache kept in step with what this node plays (decision 0032).

Asterisk fetches a URL it has not cached when a channel first plays it, on that
channel's thread (main/media_cache.c ``ast_media_cache_retrieve``, curl in
res_http_media_cache): the caller hears silence meanwhile, up to ``timeout_secs``. And it
keeps every URL it ever fetched (its cache directory, astdb) until told otherwise. So the
node tells its Asterisk, with the CLI commands of main/media_cache.c sent by AMI's
``Command`` action:

- ``media cache refresh <url>`` for every URL the node plays now, at each connect and for
  each URL a change adds (a menu edited, a queue's language changed): Asterisk downloads
  it then, on the AMI session's thread, not a caller's; an entry it holds and that is
  fresh stays as it is (``ast_bucket_file_is_stale``: no download).
- ``media cache delete <url>`` for a URL no group plays any more (a replaced prompt), and
  at each connect for the entries under this node's media URL that no group plays: a
  previous key's at once, the current key's once every expected group has reported (a
  prompt replaced while the node was down).

Each command line is one URL this node built (:meth:`MediaSigner.url`: the configured
base, then the fixed alphabet of signatures and names), checked again against that shape
here; nothing a caller or a user typed reaches it (cti.ami.actions refuses CR/LF in any
value besides). The commands go over an AMI session of their own (``Events: off``):
Asterisk runs one session's actions one after the other, so a slow download never holds
the daemon's own actions (QueueAdd, Originate) or its Ping. Needs the AMI account's
``command`` write class (dialplans/manager.conf); without it the node says so once per
connection and prompts are fetched at their first play, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter

from cti.ami.actions import AmiActionError
from cti.ami.client import AmiClient, NotConnected
from ivr.media import MEDIA_PATH, MediaSigner

__all__ = ["COMMAND_TIMEOUT_S", "MediaCache"]

log = logging.getLogger(__name__)

#: a refresh waits for Asterisk's download (res_http_media_cache.conf timeout_secs = 5)
COMMAND_TIMEOUT_S = 15.0
#: a refresh Asterisk could not do (just restarted: res_http_media_cache not loaded yet;
#: the node slow) is tried again this much later, this many times per connection
RETRY_S = 5.0
RETRIES = 3


class MediaCache:
    """What the node plays, by group (``menus``, ``queues``), and Asterisk's cache made to
    match: new URLs fetched ahead of callers, replaced ones deleted."""

    def __init__(
        self, ami: AmiClient, signer: MediaSigner, registry: CollectorRegistry | None = None
    ) -> None:
        self.ami = ami
        self.signer = signer
        self._url = re.compile(
            re.escape(signer.base_url + MEDIA_PATH)
            + r"/([A-Za-z0-9_-]{22})/((?:upload-)?[0-9a-f]{16,64})\.wav"
        )
        self._groups: dict[str, frozenset[str]] = {}
        self._refresh: set[str] = set()  # played, not yet refreshed on this connection
        self._retired: set[str] = set()  # played no more, not yet deleted from Asterisk
        self._sweep = False  # the connect's look for entries no group plays
        self._expected: set[str] = set()  # the groups that report (expect)
        self._refused = False  # no 'command' write class: nothing more on this connection
        self._tries: dict[str, int] = {}  # failed refreshes on this connection
        self._retry: asyncio.TimerHandle | None = None
        self.retry_s = RETRY_S
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._worker: asyncio.Task[None] | None = None
        self._lifecycle = asyncio.Lock()
        #: outcome -> commands (refreshed, refresh-failed, deleted, absent, refused)
        self.counts: dict[str, int] = {}
        self._metric = Counter(
            "cti_media_cache_commands", "media cache commands sent to Asterisk, by outcome",
            ["outcome"], registry=registry,
        )  # fmt: skip
        ami.add_connected_handler(self._on_connected)

    # --- what is played -------------------------------------------------------------------
    def ours(self, url: str) -> bool:
        """A URL of this node's media (the only kind a command line is made of)."""
        return self._url.fullmatch(url) is not None

    @property
    def playing(self) -> frozenset[str]:
        return frozenset().union(*self._groups.values())

    @property
    def to_refresh(self) -> frozenset[str]:
        """Played, not yet refreshed on this connection."""
        return frozenset(self._refresh)

    @property
    def to_delete(self) -> frozenset[str]:
        """Played no more, not yet deleted from Asterisk's cache."""
        return frozenset(self._retired)

    def expect(self, group: str) -> None:
        """``group`` will report what it plays (at its start). Until every expected group
        has, an entry signed by the current key that no group plays may still be one of
        theirs: only a previous key's entries are deleted meanwhile."""
        self._expected.add(group)

    @property
    def complete(self) -> bool:
        """Every expected group has reported (``playing`` is all this node plays)."""
        return self._expected <= self._groups.keys()

    def plays(self, group: str, urls: Iterable[str]) -> None:
        """``group`` plays ``urls`` now (instead of what it played before); other names
        (Asterisk's own sounds, another node's URLs) are left out."""
        before, was_complete = self.playing, self.complete
        self._groups[group] = frozenset(u for u in urls if self.ours(u))
        now = self.playing
        self._refresh = (self._refresh | (now - before)) & now
        self._retired = (self._retired | (before - now)) - now
        if self.complete and not was_complete and self.ami.connected:
            self._sweep = True  # the connect's sweep ran without knowing every group
        if now != before or self._sweep:
            self._kick()

    # --- the worker -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the worker and the cache's own AMI session (its connect warms)."""
        async with self._lifecycle:  # a lease lost and won again: close, then start
            if self._worker is None:
                self._worker = asyncio.create_task(self._run(), name="ivr-media-cache")
            await self.ami.start()

    async def close(self) -> None:
        async with self._lifecycle:
            if self._retry is not None:
                self._retry.cancel()
                self._retry = None
            task, self._worker = self._worker, None
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.ami.close()

    async def settled(self, timeout: float) -> None:
        """Return once nothing is left to send, retries included (for tests and the
        benchmark)."""
        async with asyncio.timeout(timeout):
            while True:
                await self._idle.wait()
                if not self._pending():
                    return
                await asyncio.sleep(0.05)

    async def _on_connected(self, is_reconnect: bool) -> None:
        # a (re)started Asterisk, or one that cached nothing of ours yet: everything again
        self._refresh = set(self.playing)
        self._tries.clear()
        self._refused = False
        self._sweep = True
        self._kick()

    def _pending(self) -> bool:
        if self._refused:
            return False
        return bool(self._refresh or self._retired or self._sweep or self._retry is not None)

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self.ami.connected and not self._refused:
                    await self._pass()
            except (NotConnected, TimeoutError) as exc:
                log.info("media cache: not done now (%s); again at the next connect", exc)
            except AmiActionError as exc:  # no 'command' write class
                self._count("refused")
                self._refused = True
                log.warning(
                    "media cache: Asterisk refused the Command action (%s): prompts are "
                    "fetched at their first play; give the AMI account the 'command' write "
                    "class (dialplans/manager.conf, decision 0032)", exc,
                )  # fmt: skip
                self._refresh.clear()
                self._sweep = False
            except Exception:
                log.exception("media cache: failed")
            finally:
                if not self._wake.is_set():
                    self._idle.set()

    async def _pass(self) -> None:
        while self._refresh:  # callers first
            url = min(self._refresh)
            out = await self._command("refresh", url)
            self._refresh.discard(url)
            if any(line.startswith("Refreshed '") for line in out):
                self._count("refreshed")
                self._tries.pop(url, None)
            else:
                self._count("refresh-failed")
                self._failed(url, " ".join(out))
        while self._retired:
            url = min(self._retired)
            await self._delete(url)
            self._retired.discard(url)
        if self._sweep and self.signer.key is not None:
            for url in await self._foreign():
                await self._delete(url)
            self._sweep = False

    def _failed(self, url: str, why: str) -> None:
        tries = self._tries[url] = self._tries.get(url, 0) + 1
        if tries < RETRIES:
            log.info("media cache: Asterisk could not fetch %s (%s); again in %g s", url, why,
                     self.retry_s)  # fmt: skip
            if self._retry is None:
                self._retry = asyncio.get_running_loop().call_later(self.retry_s, self._again)
        else:
            log.warning("media cache: Asterisk could not fetch %s: %s (it will at the first "
                        "play)", url, why)  # fmt: skip

    def _again(self) -> None:
        self._retry = None
        again = {u for u, n in self._tries.items() if n < RETRIES} & self.playing
        if again:
            self._refresh |= again
            self._kick()

    async def _delete(self, url: str) -> None:
        out = await self._command("delete", url)
        self._count("deleted" if any(ln.startswith("Deleted '") for ln in out) else "absent")

    async def _foreign(self) -> list[str]:
        """Asterisk's entries under this node's media URL that no group plays: those the
        current key did not sign, and once every group reported, the others too (a
        prompt replaced while no node of the server ran)."""
        answer = await self.ami.send_action(
            "Command", {"Command": "media cache show all"}, timeout=COMMAND_TIMEOUT_S
        )
        found = []
        for line in answer.get_all("Output"):
            m = self._url.fullmatch(line.strip())
            if m is not None and (self.complete or not self.signer.valid(m[1], m[2])):
                found.append(m[0])
        return sorted(set(found) - self.playing)

    async def _command(self, verb: str, url: str) -> list[str]:
        if verb not in ("refresh", "delete") or not self.ours(url):
            raise ValueError(f"not a media cache command for this node: {verb}")
        answer = await self.ami.send_action(
            "Command", {"Command": f"media cache {verb} {url}"}, timeout=COMMAND_TIMEOUT_S
        )
        return answer.get_all("Output")

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self._metric.labels(outcome).inc()
