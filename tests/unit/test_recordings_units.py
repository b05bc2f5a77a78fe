"""Recordings without sockets: file naming, path resolution inside the root, Range
parsing, signed playback URLs, per-queue config."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from recordings.config import RecordingsConfig
from recordings.naming import (
    PathRefused,
    parse_name,
    recording_path,
    resolve_inside,
    safe_id,
    with_format,
)
from recordings.ranges import Unsatisfiable, content_range, parse_range
from recordings.signing import PeerSigner, UrlSigner

T0 = datetime(2026, 11, 23, 1, 2, 3, tzinfo=UTC)


def test_names_come_only_from_filtered_ids() -> None:
    assert recording_path("1700000000.42", T0, 0) == (
        "2026/11/23/cti-20261123T010203-1700000000_42-0.wav"
    )
    hostile = "../../etc/passwd;rm -rf /\x00%2e"
    name = recording_path(hostile, T0, 1)
    assert "/" not in name.split("/", 3)[3] and ".." not in name and "%" not in name
    assert name.endswith("-1.wav") and name.startswith("2026/11/23/cti-")
    assert safe_id("") == "x" and len(safe_id("a" * 500)) == 64
    lid, started, seg = parse_name(name)
    assert started == T0 and seg == 1 and lid == safe_id(hostile)
    assert with_format(name, "mp3").endswith("-1.mp3")
    assert with_format(name, "opus").endswith("-1.ogg")


def test_names_use_utc_dates() -> None:
    from datetime import timedelta, timezone

    local = T0.astimezone(timezone(timedelta(hours=8)))
    assert recording_path("x", local, 0) == recording_path("x", T0, 0)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "monitor"
    (r / "2026" / "11" / "23").mkdir(parents=True)
    return r


GOOD = "2026/11/23/cti-20261123T010203-abc-0.mp3"


def test_resolve_inside_accepts_a_recording(root: Path) -> None:
    (root / GOOD).write_bytes(b"x")
    assert resolve_inside(root, GOOD) == (root / GOOD).resolve()


@pytest.mark.parametrize(
    "rel",
    [
        "../secret.wav",
        "2026/11/23/../../../../etc/passwd",
        "/etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "2026/11/23/cti-20261123T010203-abc-0.mp3/../../x",
        "..%2F..%2Fetc%2Fpasswd",
        "2026\\11\\23\\cti-20261123T010203-abc-0.mp3",
        "2026/11/23/cti-20261123T010203-abc-0.mp3\x00.wav",
        "2026//11/23/cti-20261123T010203-abc-0.mp3",
        "./2026/11/23/cti-20261123T010203-abc-0.mp3",
        "2026/11/23/cti-20261123T010203-a.b-0.mp3",
        "2026/11/23/cti-20261123T010203-abc-0.txt",
        "",
        "a" * 300,
    ],
)
def test_resolve_inside_refuses_traversal_and_strange_names(root: Path, rel: str) -> None:
    with pytest.raises(PathRefused):
        resolve_inside(root, rel)


def test_resolve_inside_refuses_symlinks(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.mp3"
    outside.write_bytes(b"secret")
    (root / GOOD).symlink_to(outside)
    with pytest.raises(PathRefused):
        resolve_inside(root, GOOD)
    # a directory symlink out of the root
    (root / "2026" / "12").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(PathRefused):
        resolve_inside(root, "2026/12/23/cti-20261223T010203-abc-0.mp3")


def test_resolve_inside_follows_a_symlinked_root(root: Path, tmp_path: Path) -> None:
    """The root itself may be a link (e.g. /var/spool/asterisk -> a data volume)."""
    (root / GOOD).write_bytes(b"x")
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    assert resolve_inside(alias, GOOD) == (root / GOOD).resolve()


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-99", 100, (0, 99)),
        ("bytes=0-", 100, (0, 99)),
        ("bytes=10-19", 100, (10, 19)),
        ("bytes=90-500", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=99-99", 100, (99, 99)),
        (" bytes=1-2 ", 100, (1, 2)),
        ("bytes=5-1", 100, None),  # invalid: ignored
        ("bytes=0-1,5-6", 100, None),  # multi-range: whole file
        ("items=0-1", 100, None),
        ("bytes=-", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes=" + "9" * 30 + "-", 100, None),  # absurd numbers are not parsed
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=200-300", 100),
                                              ("bytes=-0", 100), ("bytes=0-", 0)])  # fmt: skip
def test_parse_range_unsatisfiable(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


def test_content_range() -> None:
    assert content_range(0, 99, 1000) == "bytes 0-99/1000"


def test_signed_urls_bind_id_principal_and_expiry() -> None:
    signer = UrlSigner("k" * 32, ttl_s=60)
    url = signer.sign(7, "zhang san", now=1000.0)
    assert url.startswith("/recordings/media/7?p=zhang%20san&e=1060&s=")
    sig = url.rsplit("s=", 1)[1]
    assert signer.verify(7, "zhang san", "1060", sig, now=1000.0)
    assert not signer.verify(8, "zhang san", "1060", sig, now=1000.0)
    assert not signer.verify(7, "li si", "1060", sig, now=1000.0)
    assert not signer.verify(7, "zhang san", "1061", sig, now=1000.0)
    assert not signer.verify(7, "zhang san", "1060", sig, now=1061.0)  # expired
    assert not signer.verify(7, "zhang san", "1060", sig + "x", now=1000.0)
    assert not signer.verify(7, "zhang san", "-1", sig, now=1000.0)
    # not ASCII digits: refused (int() refuses '²', a ValueError was a 500)
    for odd in ("1060\u00b2", "\u0661\u0660\u0666\u0660"):
        assert not signer.verify(7, "zhang san", odd, sig, now=1000.0)
    assert not UrlSigner("other", ttl_s=60).verify(7, "zhang san", "1060", sig, now=1000.0)
    with pytest.raises(ValueError):
        signer.sign(1, "a\nb")


def test_node_to_node_links_bind_id_and_expiry_under_the_shared_secret() -> None:
    """What a node asks the holder of a recording with (recordings.peers)."""
    signer = PeerSigner("k" * 32, ttl_s=60)
    q = signer.query(7, now=1000.0)
    assert q["e"] == "1060"
    assert signer.verify(7, "1060", q["s"], now=1000.0)
    assert PeerSigner("k" * 32).verify(7, "1060", q["s"], now=1000.0)  # another node
    assert not signer.verify(8, "1060", q["s"], now=1000.0)
    assert not signer.verify(7, "1061", q["s"], now=1000.0)
    assert not signer.verify(7, "1060", q["s"], now=1061.0)  # expired
    assert not PeerSigner("j" * 32).verify(7, "1060", q["s"], now=1000.0)
    assert not signer.verify(7, "1060²", q["s"], now=1000.0)
    # not a playback link of the same secret, nor the other way round
    play = UrlSigner("k" * 32, ttl_s=60).sign(7, "peer", now=1000.0).rsplit("s=", 1)[1]
    assert not signer.verify(7, "1060", play, now=1000.0)
    # no shared secret: a key of this process only
    alone = PeerSigner("").query(7, now=1000.0)["s"]
    assert not PeerSigner("").verify(7, "1060", alone, now=1000.0)


def test_config_per_queue_policy_and_retention() -> None:
    c = RecordingsConfig.model_validate(
        {"policy": "on_demand", "retention_days": 30,
         "queues": {"vip": {"policy": "always", "retention_days": 3650},
                    "hr": {"policy": "never"}},
         "supervisor_devices": {"sup": "PJSIP/1001"}}
    )  # fmt: skip
    assert (c.policy_for("vip"), c.policy_for("hr"), c.policy_for("x")) == (
        "always", "never", "on_demand",
    )  # fmt: skip
    assert (c.retention_for("vip"), c.retention_for("hr")) == (3650, 30)
    for device in ("PJSIP/1001&PJSIP/1002", "PJSIP/1,x", "Local/1@ctx/n,b", "PJSIP/ 1"):
        with pytest.raises(ValueError):
            RecordingsConfig.model_validate({"supervisor_devices": {"s": device}})
    with pytest.raises(ValueError):
        RecordingsConfig.model_validate({"policy": "sometimes"})
    with pytest.raises(ValueError):
        RecordingsConfig.model_validate({"bitrate": "32k -y /etc/passwd"})


def _tone(path: Path, ms: int, *, silent_from: int | None = None) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pydub import AudioSegment
        from pydub.generators import Sine

    seg = Sine(440).to_audio_segment(duration=ms).set_frame_rate(8000).set_channels(1)
    if silent_from is not None:
        seg = seg[:silent_from] + AudioSegment.silent(ms - silent_from, frame_rate=8000)
    seg.set_sample_width(2).export(str(path), format="wav")


def test_transcode_is_verified_and_keeps_the_original(tmp_path: Path) -> None:
    from recordings import audio

    src = tmp_path / "a.wav"
    _tone(src, 3000, silent_from=2000)
    before = src.read_bytes()
    assert audio.wav_closed(src) and not audio.is_empty_file(src)
    info = audio.transcode(src, tmp_path / "a.mp3", "mp3", "32k")
    assert abs(info.duration_s - 3.0) < 0.1 and info.size_bytes < len(before) / 3
    assert src.read_bytes() == before  # the caller removes it, after this succeeded
    rms = audio.rms_windows(tmp_path / "a.mp3")
    assert min(rms[:7]) > 1000 and max(rms[9:]) < 50  # tone then silence survive
    opus = audio.transcode(src, tmp_path / "a.ogg", "opus", "16k")
    assert abs(opus.duration_s - 3.0) < 0.1
    assert not list(tmp_path.glob("*.part"))


def test_transcode_failure_leaves_nothing(tmp_path: Path) -> None:
    from recordings import audio

    src = tmp_path / "bad.wav"
    src.write_bytes(b"RIFF" + b"\x00" * 100)
    with pytest.raises(audio.TranscodeError):
        audio.transcode(src, tmp_path / "bad.mp3", "mp3", "32k")
    assert not (tmp_path / "bad.mp3").exists() and not list(tmp_path.glob("*.part"))


def test_wav_closed_and_empty(tmp_path: Path) -> None:
    import struct

    from recordings import audio

    f = tmp_path / "w.wav"
    _tone(f, 500)
    data = bytearray(f.read_bytes())
    data[4:8] = struct.pack("<I", 36)  # what the header says while Asterisk still writes
    f.write_bytes(bytes(data))
    assert not audio.wav_closed(f)
    (tmp_path / "z.wav").write_bytes(b"")
    assert audio.is_empty_file(tmp_path / "z.wav") and not audio.wav_closed(tmp_path / "z.wav")
    header_only = tmp_path / "h.wav"
    header_only.write_bytes(data[:44])
    assert audio.is_empty_file(header_only)
