"""AmiClient against a scripted AMI server on 127.0.0.1 (socket-level protocol tests).

The real-Asterisk acceptance tests live in tests/acceptance; this server only speaks
enough AMI to drive the client through login, actions, lists, drops and ping timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cti.ami import (
    AmiActionError,
    AmiClient,
    AmiParser,
    Message,
    NotConnected,
    UnsafeActionValue,
)

SECRET = "s3cr3t-Zq9-never-logged"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
SYSTEM = "cti-fake-4f2a"

Reply = Callable[["FakeAmi", asyncio.StreamWriter, Message], Awaitable[None] | None]


def frame(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def event(name: str, linkedid: str, *extra: str) -> bytes:
    """An event as Asterisk writes it: SystemName, a whole channel snapshot."""
    return frame(
        f"Event: {name}", "Privilege: call,all", f"SystemName: {SYSTEM}",
        "Channel: PJSIP/9-0009", "ChannelState: 6", "ChannelStateDesc: Up",
        "CallerIDNum: 100", "CallerIDName: x", "ConnectedLineNum: <unknown>",
        "ConnectedLineName: <unknown>", "Language: en", "AccountCode: ", "Context: c",
        "Exten: s", "Priority: 1", f"Uniqueid: {linkedid}", f"Linkedid: {linkedid}", *extra,
    )  # fmt: skip


class FakeAmi:
    """A scripted AMI server: banner, Login, Ping, CoreShowChannels, custom replies."""

    def __init__(self) -> None:
        self.secret = SECRET
        self.answer_ping = True
        self.replies: dict[str, Reply] = {}
        self.received: list[Message] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.logins = 0
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        self.drop_all()
        await self.server.wait_closed()

    def drop_all(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    def broadcast(self, data: bytes) -> None:
        for writer in self.writers:
            writer.write(data)

    def actions(self, name: str) -> list[Message]:
        return [m for m in self.received if m.get("Action") == name]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        writer.write(BANNER)
        parser = AmiParser()
        try:
            while data := await reader.read(65536):
                parser.receive_data(data)
                for msg in parser.events_received():
                    assert isinstance(msg, Message), msg
                    self.received.append(msg)
                    await self._answer(writer, msg)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def _answer(self, writer: asyncio.StreamWriter, msg: Message) -> None:
        action, aid = msg["Action"], msg.action_id or ""
        if action in self.replies:
            result = self.replies[action](self, writer, msg)
            if result is not None:
                await result
        elif action == "Login":
            if msg.get("Secret") == self.secret:
                self.logins += 1
                writer.write(
                    frame(
                        "Response: Success", f"ActionID: {aid}", "Message: Authentication accepted"
                    )
                )
            else:
                writer.write(
                    frame("Response: Error", f"ActionID: {aid}", "Message: Authentication failed")
                )
        elif action == "CoreSettings":
            writer.write(frame("Response: Success", f"ActionID: {aid}", f"SystemName: {SYSTEM}"))
        elif action == "Ping":
            if self.answer_ping:
                writer.write(frame("Response: Success", f"ActionID: {aid}", "Ping: Pong"))
        elif action == "CoreShowChannels":
            writer.write(
                frame("Response: Success", f"ActionID: {aid}", "EventList: start")
                + frame("Event: CoreShowChannel", f"ActionID: {aid}", "Channel: PJSIP/1-0001")
                + event("Hangup", "9.9", "Cause: 16")
                + frame("Event: CoreShowChannel", f"ActionID: {aid}", "Channel: PJSIP/2-0002")
                + frame(
                    "Event: CoreShowChannelsComplete",
                    f"ActionID: {aid}",
                    "EventList: Complete",
                    "ListItems: 2",
                )
            )
        elif action == "QueueAdd":
            writer.write(
                frame("Response: Success", f"ActionID: {aid}", "Message: Added interface to queue")
            )
        else:
            writer.write(
                frame("Response: Error", f"ActionID: {aid}", "Message: Invalid/unknown command")
            )


@pytest.fixture
async def ami() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()
    await server.start()
    yield server
    await server.stop()


@contextlib.asynccontextmanager
async def running(client: AmiClient) -> AsyncIterator[AmiClient]:
    await client.start()
    try:
        yield client
    finally:
        await client.close()


def make_client(ami: FakeAmi, secret: str = SECRET, **kwargs: float) -> AmiClient:
    options: dict[str, float] = {
        "ping_interval": 5.0,
        "action_timeout": 0.5,
        "connect_timeout": 0.5,
        "backoff_initial": 0.01,
        "backoff_max": 0.05,
    }
    options.update(kwargs)
    return AmiClient("127.0.0.1", ami.port, "cti", secret, **options)  # type: ignore[arg-type]


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll until ``predicate()`` holds (within 1 s): it reads state of the client, the
    server and the handlers alike, which no single Event covers."""
    async with asyncio.timeout(1.0):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.002)


_BASELINE: set[asyncio.Task[object]] = set()


def _ami_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("ami-") and not t.done()}


@pytest.fixture(autouse=True)
async def _baseline_tasks() -> None:
    """AMI clients of other test modules (a session-wide one) may be running: ignore them."""
    _BASELINE.clear()
    _BASELINE.update(_ami_tasks())


def our_tasks() -> set[asyncio.Task[object]]:
    return _ami_tasks() - _BASELINE


# --- login -------------------------------------------------------------------------------


async def test_login_ok(ami: FakeAmi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    calls: list[bool] = []

    async def on_connected(is_reconnect: bool) -> None:
        calls.append(is_reconnect)

    client = make_client(ami)
    client.add_connected_handler(on_connected)
    assert not client.connected
    async with running(client):
        await client.wait_connected(1.0)
        assert client.connected
        await eventually(lambda: calls == [False])
        (login,) = ami.actions("Login")
        assert login["Username"] == "cti"
        assert login["Secret"] == SECRET
        assert login["Events"] == "call,agent,cdr,user"
        assert login.action_id
    assert not client.connected
    assert SECRET not in caplog.text
    assert not our_tasks()


async def test_login_refused_is_logged_and_retried(
    ami: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(ami, secret="wrong-" + SECRET)
    async with running(client):
        await eventually(lambda: len(ami.actions("Login")) >= 3)
        assert not client.connected
        with pytest.raises(TimeoutError):
            await client.wait_connected(0.01)
        with pytest.raises(NotConnected):
            await client.send_action("Ping")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert all("login as 'cti' refused: Authentication failed" in r.getMessage() for r in errors)
    assert len(errors) >= len(ami.actions("Login")) - 1  # one line per attempt
    assert SECRET not in caplog.text
    assert not our_tasks()


# --- actions -----------------------------------------------------------------------------


async def test_action_round_trip(ami: FakeAmi) -> None:
    async with running(make_client(ami)) as client:
        await client.wait_connected(1.0)
        reply = await client.send_action(
            "QueueAdd",
            {"Queue": "support", "Interface": "Local/101@agents/n", "Penalty": 1},
        )
        assert reply.response == "Success"
        assert reply["Message"] == "Added interface to queue"
        (sent,) = ami.actions("QueueAdd")
        assert sent["Queue"] == "support"
        assert sent["Penalty"] == "1"
        assert sent.action_id == reply.action_id

        with pytest.raises(AmiActionError) as excinfo:
            await client.send_action("NoSuchAction")
        assert str(excinfo.value) == "Invalid/unknown command"
        assert excinfo.value.response.response == "Error"


async def test_list_action_and_interleaved_event(ami: FakeAmi) -> None:
    events: list[Message] = []
    client = make_client(ami)
    client.add_event_handler(events.append)
    async with running(client):
        await client.wait_connected(1.0)
        response, items = await client.send_list_action("CoreShowChannels")
        assert response["EventList"] == "start"
        assert [i["Channel"] for i in items] == ["PJSIP/1-0001", "PJSIP/2-0002"]
        # list items go to the action; the unrelated event goes to the handlers
        assert [e.event for e in events] == ["Hangup"]


async def test_unsafe_value_sends_nothing(ami: FakeAmi) -> None:
    async with running(make_client(ami)) as client:
        await client.wait_connected(1.0)
        before = len(ami.received)
        with pytest.raises(UnsafeActionValue):
            await client.send_action("Setvar", {"Variable": "X", "Value": "1\r\nAction: Originate"})
        assert (await client.send_action("Ping"))["Ping"] == "Pong"
        assert [m["Action"] for m in ami.received[before:]] == ["Ping"]


async def test_action_timeout_and_late_answer(ami: FakeAmi) -> None:
    ami.answer_ping = False
    async with running(make_client(ami)) as client:
        await client.wait_connected(1.0)
        with pytest.raises(TimeoutError, match="Ping"):
            await client.send_action("Ping", timeout=0.05)
        (ping,) = ami.actions("Ping")
        ami.broadcast(frame("Response: Success", f"ActionID: {ping.action_id}", "Ping: Pong"))
        reply = await client.send_action("QueueAdd", {"Queue": "q", "Interface": "Local/1@x"})
        assert reply.response == "Success"
        assert client.connected


async def test_action_while_disconnected_raises_at_once(ami: FakeAmi) -> None:
    client = make_client(ami)
    async with asyncio.timeout(0.1):
        with pytest.raises(NotConnected):
            await client.send_action("Ping")
        with pytest.raises(NotConnected):
            await client.send_list_action("CoreShowChannels")
    await ami.stop()
    async with running(client):
        async with asyncio.timeout(0.1):
            with pytest.raises(NotConnected):
                await client.send_action("Ping", timeout=10)
    await ami.start()  # the fixture stops it again


# --- connection loss ---------------------------------------------------------------------


async def test_server_drop_reconnects_and_resyncs(ami: FakeAmi) -> None:
    connected: list[bool] = []
    disconnected: list[str] = []

    async def on_connected(is_reconnect: bool) -> None:
        connected.append(is_reconnect)

    ami.replies["Hold"] = lambda server, writer, msg: None  # never answered
    client = make_client(ami)
    client.add_connected_handler(on_connected)
    client.add_disconnected_handler(disconnected.append)
    async with running(client):
        await client.wait_connected(1.0)
        pending = asyncio.create_task(client.send_action("Hold", timeout=5))
        await eventually(lambda: bool(ami.actions("Hold")))
        ami.drop_all()
        async with asyncio.timeout(0.5):
            with pytest.raises(NotConnected):
                await pending
        await eventually(lambda: connected == [False, True])
        assert ami.connections == 2
        assert ami.logins == 2
        assert disconnected == ["connection closed by Asterisk"]
        assert client.connected
        assert (await client.send_action("Ping"))["Ping"] == "Pong"
    assert disconnected == ["connection closed by Asterisk", "closed"]


async def test_ping_timeout_reconnects(ami: FakeAmi, caplog: pytest.LogCaptureFixture) -> None:
    ami.answer_ping = False
    connected: list[bool] = []
    disconnected: list[str] = []

    async def on_connected(is_reconnect: bool) -> None:
        connected.append(is_reconnect)

    client = make_client(ami, ping_interval=0.02, action_timeout=0.05)
    client.add_connected_handler(on_connected)
    client.add_disconnected_handler(disconnected.append)
    async with running(client):
        await eventually(lambda: connected == [False, True])
        assert ami.connections == 2
        assert disconnected[0] == "no Ping response within 0.05 s"
    assert "no Ping response" in caplog.text


async def test_close_during_backoff_leaves_no_task(
    ami: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cti.ami")
    await ami.stop()  # connection refused from now on
    before = asyncio.all_tasks()
    client = make_client(ami, backoff_initial=30.0, backoff_max=30.0)
    await client.start()
    await eventually(lambda: "reconnecting in" in caplog.text)
    assert our_tasks()
    async with asyncio.timeout(0.2):
        await client.close()
    assert not our_tasks()
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before
    with pytest.raises(NotConnected):
        await client.send_action("Ping")
    await ami.start()


async def test_close_while_connected_fails_pending(ami: FakeAmi) -> None:
    ami.replies["Hold"] = lambda server, writer, msg: None
    client = make_client(ami)
    await client.start()
    await client.wait_connected(1.0)
    pending = asyncio.create_task(client.send_action("Hold", timeout=5))
    await eventually(lambda: bool(ami.actions("Hold")))
    await client.close()
    with pytest.raises(NotConnected):
        await pending
    assert not our_tasks()
    await client.close()  # idempotent


# --- events ------------------------------------------------------------------------------


async def test_failing_event_handler_does_not_stop_later_events(
    ami: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken(msg: Message) -> None:
        raise RuntimeError("handler bug")

    client = make_client(ami)
    client.add_event_handler(broken)
    client.add_event_handler(lambda msg: seen.append(msg["Linkedid"]))
    async with running(client):
        await client.wait_connected(1.0)
        ami.broadcast(b"".join(event("Hangup", str(i)) for i in range(3)))
        await eventually(lambda: len(seen) == 3)
        ami.broadcast(b"garbage line\r\n\r\n" + event("Hangup", "3"))
        await eventually(lambda: len(seen) == 4)
        assert seen == ["0", "1", "2", "3"]
        assert client.connected
        assert client.dropped == {"malformed": 1}
    failures = [r for r in caplog.records if r.exc_info and "handler bug" in str(r.exc_info[1])]
    assert len(failures) == 4
    assert "AMI message dropped (malformed, event ''): 'garbage line'" in caplog.text


async def test_events_dispatched_while_resync_awaits(ami: FakeAmi) -> None:
    """A connected handler's actions are answered by the reader running beside it, and
    events that arrive meanwhile reach the handlers (no deadlock)."""
    order: list[str] = []
    release = asyncio.Event()

    async def slow_status(server: FakeAmi, writer: asyncio.StreamWriter, msg: Message) -> None:
        writer.write(event("Newchannel", "during-resync"))
        await release.wait()
        aid = msg.action_id
        writer.write(
            frame("Response: Success", f"ActionID: {aid}", "EventList: start")
            + frame("Event: StatusComplete", f"ActionID: {aid}", "EventList: Complete")
        )

    async def resync(is_reconnect: bool) -> None:
        order.append("resync start")
        _, items = await client.send_list_action("Status")
        order.append(f"resync done {len(items)}")

    def on_event(msg: Message) -> None:
        order.append(msg["Linkedid"])
        release.set()

    ami.replies["Status"] = slow_status
    client = make_client(ami)
    client.add_connected_handler(resync)
    client.add_event_handler(on_event)
    async with running(client):
        await eventually(lambda: "resync done 0" in order)
    assert order == ["resync start", "during-resync", "resync done 0"]


async def test_secret_never_logged(ami: FakeAmi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(ami)
    async with running(client):
        await client.wait_connected(1.0)
        await client.send_action("Ping")
        with pytest.raises(UnsafeActionValue):
            await client.send_action("Login", {"Username": "x", "Secret": SECRET + "\n"})
        ami.drop_all()
        await eventually(lambda: ami.logins == 2)
    bad = make_client(ami, secret=SECRET + "-wrong")
    async with running(bad):
        await eventually(lambda: len(ami.actions("Login")) >= 4)
    assert "Login" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in repr(client)


# --- the screen, end to end (issue 13) ----------------------------------------------------


def _cut(value: str) -> bytes:
    """A Newchannel whose caller number ``value`` carries CR/LF, as Asterisk writes it."""
    return event("Newchannel", "x.1").replace(b"CallerIDNum: 100", f"CallerIDNum: {value}".encode())


async def test_injected_messages_are_dropped_counted_and_logged_once(
    ami: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    counted: list[str] = []
    client = AmiClient(
        "127.0.0.1", ami.port, "cti", SECRET, on_drop=counted.append, drop_log_interval=60
    )
    client.add_event_handler(lambda msg: seen.append(f"{msg.event} {msg.get('Linkedid')}"))
    async with running(client):
        await client.wait_connected(1.0)
        assert client.system_name == SYSTEM
        ami.broadcast(event("Newchannel", "victim"))
        await eventually(lambda: len(seen) == 1)
        for _ in range(50):  # a hostile caller, again and again
            ami.broadcast(
                _cut("1\r\nLinkedid: victim")
                + _cut("1\r\n\r\nEvent: QueueCallerAbandon\r\nLinkedid: victim")
                + _cut("1\r\nUniqueid: victim\r\nLinkedid: victim\r\n\r\nEvent: Hangup")
            )
        ami.broadcast(event("Hangup", "victim", "Cause: 16"))
        await eventually(lambda: len(seen) == 2)
    assert seen == ["Newchannel victim", "Hangup victim"]
    assert client.dropped == {
        "repeated_header": 50, "incomplete": 50, "foreign_system": 100, "injected_head": 50,
    }  # fmt: skip
    assert sorted(set(counted)) == sorted(client.dropped)
    assert len(counted) == 250
    lines = [r for r in caplog.records if "AMI message dropped" in r.getMessage()]
    assert len(lines) == 1  # no log flood


async def test_events_before_the_system_name_is_known_are_kept(ami: FakeAmi) -> None:
    """Events that arrive between login and the CoreSettings answer wait for it, then
    pass the same screen."""

    async def slow_settings(server: FakeAmi, writer: asyncio.StreamWriter, msg: Message) -> None:
        writer.write(event("Newchannel", "early"))
        await asyncio.sleep(0.05)
        writer.write(event("Newchannel", "forged").replace(SYSTEM.encode(), b"guess"))
        await asyncio.sleep(0.05)
        writer.write(
            frame("Response: Success", f"ActionID: {msg.action_id}", f"SystemName: {SYSTEM}")
        )

    seen: list[str] = []
    ami.replies["CoreSettings"] = slow_settings
    client = make_client(ami)
    client.add_event_handler(lambda msg: seen.append(msg["Linkedid"]))
    async with running(client):
        await client.wait_connected(1.0)
        await eventually(lambda: client.dropped["foreign_system"] == 1)
    assert seen == ["early"]
    assert client.dropped == {"foreign_system": 1}


async def test_asterisk_refusing_core_settings_still_works(
    ami: FakeAmi, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(server: FakeAmi, writer: asyncio.StreamWriter, msg: Message) -> None:
        writer.write(frame("Response: Error", f"ActionID: {msg.action_id}",
                           "Message: Permission denied"))  # fmt: skip

    seen: list[str] = []
    ami.replies["CoreSettings"] = refuse
    client = make_client(ami)
    client.add_event_handler(lambda msg: seen.append(msg["Linkedid"]))
    async with running(client):
        await client.wait_connected(1.0)
        assert client.system_name is None
        ami.broadcast(event("Newchannel", "a") + _cut("1\r\nLinkedid: victim"))
        await eventually(lambda: client.dropped["repeated_header"] == 1)
        await eventually(lambda: seen == ["a"])
    assert "CoreSettings refused" in caplog.text


async def test_action_ids_are_unguessable(ami: FakeAmi) -> None:
    one, two = make_client(ami), make_client(ami)
    async with running(one), running(two):
        await one.wait_connected(1.0)
        await two.wait_connected(1.0)
    ids = {m.action_id for m in ami.actions("Login")}
    assert len(ids) == 2
    assert all(i is not None and len(i.split("-")[1]) == 12 for i in ids)
