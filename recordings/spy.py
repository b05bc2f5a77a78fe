"""Live monitoring: ChanSpy originated to the supervisor's device.

The supervisor's device comes from config (``supervisor_devices``), the spied channel
from the live model (the agent's channel of an answered call): nothing the client sends
reaches the Originate except the call id used to look the call up and a mode from a
fixed set. ChanSpy options: ``q`` no beep/announcement, ``w`` whisper to the agent,
``B`` barge (talk to both), ``E`` leave when the spied channel hangs up.
"""

from __future__ import annotations

import secrets

from cti.ami.client import AmiClient
from recordings.config import DEVICE_RE, RecordingsConfig
from recordings.control import CHANNEL_RE, ControlError, LiveCall

__all__ = ["MODES", "spy_data", "start_spy"]

MODES = {"listen": "qE", "whisper": "qwE", "barge": "qBE"}


def spy_data(target_channel: str, mode: str) -> str:
    """ChanSpy's argument string for ``target_channel`` (a full channel name, used as
    ChanSpy's prefix) in ``mode``."""
    if mode not in MODES:
        raise ControlError(f"mode must be one of {', '.join(MODES)}", 400)
    if CHANNEL_RE.fullmatch(target_channel) is None:
        raise ControlError("the agent's channel name is not usable", 409)
    return f"{target_channel},{MODES[mode]}"


async def start_spy(
    ami: AmiClient, config: RecordingsConfig, call: LiveCall, supervisor: str, mode: str
) -> str:
    """Ring the supervisor's device; when answered it spies on the agent's channel.
    Returns the spy channel's id (``ChannelId`` of the Originate)."""
    device = config.supervisor_devices.get(supervisor)
    if device is None or DEVICE_RE.fullmatch(device) is None:
        raise ControlError("no device configured for this supervisor", 409)
    data = spy_data(call.agent_channel, mode)
    spy_id = f"spy-{secrets.token_hex(8)}"
    await ami.send_action(
        "Originate",
        {
            "Channel": device, "Application": "ChanSpy", "Data": data,
            "CallerID": f'"{config.spy_caller_id}" <{mode}>', "Async": "true",
            "Timeout": "30000", "ChannelId": spy_id, "OtherChannelId": spy_id + "-2",
        },
    )  # fmt: skip
    return spy_id
