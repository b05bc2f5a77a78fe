"""Prompts served to Asterisk over HTTP (ivr.media, decision 0032): a signed,
content-addressed URL; nothing else in the prompt directory is reachable; what
res_http_media_cache reads (Content-Type, Cache-Control, ETag, 304) is answered. What
Asterisk's media cache is told (ivr.media_cache): only this node's URLs, by group."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from acd.queues_conf import config_file
from acd.store import QueueParams
from cti.ami.client import AmiClient
from cti.web.errors import error_middleware
from ivr.config import IvrConfig
from ivr.media import MAX_AGE_S, MediaServer, MediaSigner, auto_base, media_key
from ivr.media_cache import MediaCache
from ivr.menus import Prompt
from ivr.prompts import PromptStore

BASE = "http://10.0.0.5:8080"
KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[TestClient, MediaServer]]:
    (tmp_path / f"{KEY}.wav").write_bytes(b"RIFF-a-prompt")
    (tmp_path / "secret.txt").write_text("not a prompt")
    (tmp_path / "upload-aaaaaaaaaaaaaaaaaaaa.wav").symlink_to(tmp_path / "secret.txt")
    server = MediaServer(MediaSigner(media_key("s3cret"), BASE), tmp_path)
    app = web.Application(middlewares=[error_middleware])
    server.add_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client, server
    await client.close()


def _path(url: str) -> str:
    return url.removeprefix(BASE)


async def test_a_signed_prompt_is_served_as_wav_for_a_year(
    served: tuple[TestClient, MediaServer],
) -> None:
    client, server = served
    url = server.signer.url(KEY)
    assert re.fullmatch(rf"{BASE}/media/v1/[A-Za-z0-9_-]{{22}}/{KEY}\.wav", url)
    r = await client.get(_path(url))
    assert r.status == 200 and await r.read() == b"RIFF-a-prompt"
    assert r.headers["Content-Type"] == "audio/wav"  # format_wav's MIME type
    assert r.headers["ETag"] == f'"{KEY}"'
    assert f"max-age={MAX_AGE_S}" in r.headers["Cache-Control"]
    # Asterisk's revalidation: HEAD with If-None-Match
    r = await client.head(_path(url), headers={"If-None-Match": f'"{KEY}"'})
    assert r.status == 304
    assert server.counts == {"served": 1, "not-modified": 1}


@pytest.mark.parametrize("mangle", [
    lambda u: u.replace("/media/v1/", "/media/v1/A"),  # signature changed
    lambda u: u.replace(KEY, KEY[:-1] + "8"),  # another name under this signature
    lambda u: u.replace(".wav", ".txt"),
    lambda u: u.replace(f"{KEY}.wav", "..%2Fsecret.txt"),
    lambda u: u.replace(f"{KEY}.wav", "secret.wav"),
])  # fmt: skip
async def test_anything_but_a_signed_name_is_refused(
    served: tuple[TestClient, MediaServer], mangle: object
) -> None:
    client, server = served
    assert callable(mangle)
    r = await client.get(_path(mangle(server.signer.url(KEY))))
    assert r.status in (403, 404)
    assert b"not a prompt" not in await r.read()
    assert "served" not in server.counts


async def test_a_signed_name_that_is_not_a_regular_file_here_is_a_clear_404(
    served: tuple[TestClient, MediaServer],
) -> None:
    client, server = served
    for name in ("upload-aaaaaaaaaaaaaaaaaaaa", "f" * 40):  # a symlink out; absent
        r = await client.get(_path(server.signer.url(name)))
        assert r.status == 404 and (await r.json())["code"] == "no-media"
    assert server.counts == {"missing": 2}


def test_urls_are_the_same_on_every_node_with_the_secret_and_refuse_odd_names() -> None:
    a, b = MediaSigner(media_key("k"), BASE), MediaSigner(media_key("k"), "http://n2:80/")
    assert a.sig(KEY) == b.sig(KEY) and b.url(KEY).startswith("http://n2:80/media/v1/")
    assert media_key("") is None  # no secret: the store's key (test_ivr_store)
    keyless = MediaSigner(None, BASE)
    with pytest.raises(RuntimeError):
        keyless.url(KEY)  # no URL before the key is read
    assert not keyless.valid(a.sig(KEY), KEY)
    assert "k" not in repr(a) and repr(a.key) not in repr(a)
    for name in ("../etc/passwd", "UPPER0123456789ab", "abc", KEY + "/x"):
        with pytest.raises(ValueError):
            a.url(name)


def test_prompts_played_by_url_and_written_into_queues_conf(tmp_path: Path) -> None:
    store = PromptStore(tmp_path, "/x", MediaSigner(media_key("k"), BASE))
    url = store.playable(Prompt(text="Welcome.", voice="en"))
    assert url.startswith(f"{BASE}/media/v1/") and url.endswith(".wav")
    assert store.playable(Prompt(file="beep")) == "beep"  # Asterisk's own: as it is
    assert store.playable(Prompt(upload="ab" * 20)).endswith(f"/upload-{'ab' * 20}.wav")
    # no character Playback / periodic-announce / queues.conf would split or cut at
    assert not set(url) & set(",&|;? \t")
    conf = config_file(
        [QueueParams(name="q", announce_position=True, language="en")],
        phrases={"en": {"queue-thereare": url}},
    )
    assert ("queue-thereare", url) in conf.categories[0].options


@pytest.mark.parametrize("value", ["auto", "", "http://10.0.0.5:8080", "https://n1.example/cti/"])
def test_media_url_setting_accepts(value: str) -> None:
    assert IvrConfig(media_url=value).media_url == value.rstrip("/")


@pytest.mark.parametrize("value", [
    "ftp://h/", "http://h/a?b=1", "http://h/a,b", "http://h/a;b", "http://h/a b", "file:///x",
    "http://h/a&b",
])  # fmt: skip
def test_media_url_setting_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        IvrConfig(media_url=value)


def _cache() -> MediaCache:
    ami = AmiClient("127.0.0.1", 1, "cti", "secret")  # never started: nothing is sent
    return MediaCache(ami, MediaSigner(media_key("k"), BASE), CollectorRegistry())


def test_the_cache_is_told_what_each_group_adds_and_what_no_group_plays_any_more() -> None:
    cache, signer = _cache(), MediaSigner(media_key("k"), BASE)
    a, b, c = (signer.url(n * 40) for n in "abc")
    cache.plays("menus", [a, b, "beep", "http://other-node:80/media/v1/x/y.wav"])
    cache.plays("queues", [b])
    assert cache.playing == {a, b} and cache.to_refresh == {a, b}  # only this node's URLs
    cache.plays("menus", [c])  # a edited away; b still played by the queues
    assert cache.playing == {b, c} and cache.to_delete == {a}
    cache.plays("queues", [a])  # a back before it was deleted: nothing to delete
    assert cache.to_delete == {b} and a in cache.to_refresh


def test_entries_no_group_plays_are_only_swept_once_every_expected_group_reported() -> None:
    cache = _cache()
    cache.expect("menus")
    cache.expect("queues")
    cache.plays("menus", [])
    assert not cache.complete  # the queues' announcements may still be cached entries
    cache.plays("queues", [])
    assert cache.complete


@pytest.mark.parametrize("url", [
    f"{BASE}/media/v1/AAAAAAAAAAAAAAAAAAAAAA/{KEY}.wav core stop now",
    f"{BASE}/media/v1/AAAAAAAAAAAAAAAAAAAAAA/{KEY}.wav\r\nAction: Originate",
    f"http://10.0.0.6:8080/media/v1/AAAAAAAAAAAAAAAAAAAAAA/{KEY}.wav",
    f"{BASE}/media/v1/AAAAAAAAAAAAAAAAAAAAAA/../{KEY}.wav",
    "core restart now",
])  # fmt: skip
async def test_no_command_line_but_a_url_of_this_nodes_shape(url: str) -> None:
    cache = _cache()
    assert not cache.ours(url)
    with pytest.raises(ValueError):
        await cache._command("refresh", url)
    with pytest.raises(ValueError):
        await cache._command("show", MediaSigner(media_key("k"), BASE).url(KEY))


ANY = "0.0.0.0"  # noqa: S104 (an [http] host value, nothing binds here)


@pytest.mark.parametrize(("http_host", "ami_host", "advertise", "base"), [
    ("127.0.0.1", "127.0.0.1", "", "http://127.0.0.1:8080"),  # the single box (make up)
    ("10.0.6.21", "10.0.6.5", "", "http://10.0.6.21:8080"),  # listening on one address
    (ANY, "127.0.0.1", "", "http://127.0.0.1:8080"),  # every address: the route's
    (ANY, "10.0.6.5", "10.0.6.21", "http://10.0.6.21:8080"),  # agi.advertise
    ("node1.example", "10.0.6.5", "", "http://node1.example:8080"),
    ("127.0.0.1", "10.0.6.5", "", None),  # Asterisk elsewhere cannot reach our loopback
    ("localhost", "10.0.6.5", "", None),
    ("::", "127.0.0.1", "::1", None),  # IPv6: not in a URL Asterisk's lists can take
])  # fmt: skip
def test_auto_names_the_address_asterisk_reaches_this_node_at(
    http_host: str, ami_host: str, advertise: str, base: str | None
) -> None:
    assert auto_base(http_host, 8080, ami_host, advertise) == base
    assert auto_base(http_host, 0, ami_host, advertise) is None  # port not bound yet


def test_auto_is_the_default_and_a_directory_shared_with_asterisk_keeps_playing_by_path() -> None:
    assert IvrConfig().media_url == "auto"
    shared = IvrConfig(prompt_dir_asterisk="/var/lib/asterisk/sounds/cti")
    assert "prompt_dir_asterisk" in shared.model_fields_set  # what the feature looks at
    assert "prompt_dir_asterisk" not in IvrConfig(prompt_dir=Path("/x")).model_fields_set
