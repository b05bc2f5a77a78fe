"""The cluster's live wallboard state (cti.cluster.live): one state per server, the newest;
expired or withdrawn states leave; the servers' queues merge into one view with each
agent once, in the busiest of their states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cti.cluster.codec import Envelope, decode, encode
from cti.cluster.live import ServerBoard, merge_servers
from cti.events import ServerLiveState

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


def member(name: str, state: str = "idle", paused: bool = False) -> dict[str, Any]:
    return {"interface": f"PJSIP/{name}", "name": name, "penalty": 0, "paused": paused,
            "paused_reason": "", "dynamic": True, "calls_taken": 0, "state": state,
            "linkedid": "", "state_since": T0.isoformat()}  # fmt: skip


def entry(uid: str, wait_s: float) -> dict[str, Any]:
    return {"uniqueid": uid, "linkedid": uid, "channel": "PJSIP/x", "caller_num": "13900000000",
            "position": 1, "wait_s": wait_s, "ringing": []}  # fmt: skip


def queue(
    name: str, members: list[dict[str, Any]], entries: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"name": name, "strategy": "ringall", "members": members, "entries": entries,
            "completed": 0, "abandoned": 0}  # fmt: skip


def state(server: str, at: datetime, *queues: dict[str, Any], **kw: Any) -> ServerLiveState:
    return ServerLiveState(server, at, tuple(queues), **kw)


def test_waiting_callers_sum_across_servers_with_per_server_figures() -> None:
    merged = merge_servers([
        ("a", [queue("q", [member("ag1")], [entry("a-1", 5.0)])], 2.0),
        ("b", [queue("q", [member("ag2")], [entry("b-1", 1.0), entry("b-2", 0.5)])], 0.0),
    ])  # fmt: skip
    (q,) = merged
    assert [e["server"] for e in q["entries"]] == ["a", "b", "b"]
    assert q["entries"][0]["wait_s"] == 7.0  # aged by its state's age
    assert q["servers"]["a"] == {"waiting": 1, "longest_wait_s": 7.0, "states": {"idle": 1}}
    assert q["servers"]["b"]["waiting"] == 2
    assert sorted(m["name"] for m in q["members"]) == ["ag1", "ag2"]


def test_an_agent_member_on_two_servers_shows_once_in_the_busiest_state() -> None:
    merged = merge_servers([
        ("a", [queue("q", [member("ag1", "idle")], [])], 0.0),
        ("b", [queue("q", [member("ag1", "on_call")], [])], 0.0),
        ("c", [queue("q", [member("ag1", "ringing")], [])], 0.0),
    ])  # fmt: skip
    (m,) = merged[0]["members"]
    assert (m["state"], m["server"]) == ("on_call", "b")
    assert merged[0]["servers"]["a"]["states"] == {"idle": 1}


def test_newest_state_per_server_wins_and_a_withdrawn_server_leaves_at_once() -> None:
    board = ServerBoard()
    assert board.put(state("a", T0, queue("q", [], [entry("a-1", 1.0)])), T0)
    assert not board.put(state("a", T0 - timedelta(seconds=1)), T0)  # older: ignored
    assert board.merged(T0)[0]["servers"]["a"]["waiting"] == 1
    # the replacement driver's state replaces the dead one's
    assert board.put(state("a", T0 + timedelta(seconds=1), queue("q", [], [])), T0)
    assert board.merged(T0 + timedelta(seconds=1))[0]["servers"]["a"]["waiting"] == 0
    assert board.put(state("a", T0 + timedelta(seconds=2), live=False), T0)
    assert board.merged(T0 + timedelta(seconds=2)) == []
    # a withdrawal older than the state held is a late one (the old driver's): ignored
    board.put(state("a", T0 + timedelta(seconds=5), queue("q", [], [])), T0)
    assert not board.put(state("a", T0 + timedelta(seconds=3), live=False), T0)
    assert "a" in board.servers(T0 + timedelta(seconds=5))


def test_a_state_expires_after_its_ttl_and_a_replayed_old_one_is_not_shown() -> None:
    board = ServerBoard()
    board.put(state("a", T0, queue("q", [], []), ttl_s=5.0), T0)
    assert "a" in board.servers(T0 + timedelta(seconds=5))
    assert board.servers(T0 + timedelta(seconds=5.1)) == {}
    # replayed by the broker long after it was published: received now, already expired
    board.put(state("b", T0, queue("q", [], []), ttl_s=5.0), T0 + timedelta(minutes=10))
    assert board.servers(T0 + timedelta(minutes=10)) == {}


def test_the_driving_node_shows_its_own_model_for_its_server_not_the_broker_copy() -> None:
    board = ServerBoard()
    board.put(state("a", T0, queue("q", [], [entry("old", 1.0)])), T0)
    board.put(state("b", T0, queue("q", [], [entry("b-1", 1.0)])), T0)
    mine = [queue("q", [], [])]
    (q,) = board.merged(T0, "a", mine)
    assert [e["uniqueid"] for e in q["entries"]] == ["b-1"]
    assert q["servers"]["a"]["waiting"] == 0


def test_the_state_crosses_the_broker_codec_unchanged() -> None:
    ev = state("a", T0, queue("q", [member("ag1", "on_call")], [entry("a-1", 3.5)]), ttl_s=7.0)
    assert decode(encode(Envelope("id1", "n1", ev))).event == ev
