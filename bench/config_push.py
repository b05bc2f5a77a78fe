"""Phones pushed to Asterisk over AMI (decision 0031): the one-file whole push (what the
daemon did before the shards) vs the phones feature's push (32 files, only what differs),
at several phone counts, against a real Asterisk (as the acceptance tests start it).

For each count N, on one Asterisk, in this order:

- ``one file whole``: the baseline, every phone in ``pjsip_phones.conf`` pushed whole
  from the base (what every connect and every phone change cost before);
- ``files whole``: every phone's file pushed whole (a fresh Asterisk: no file yet);
- ``connect unchanged``: the Provisioner's apply on files that already hold every phone
  (the usual connect; nothing is rewritten);
- ``one phone changed``, ``one phone added``, ``one phone removed``: the Provisioner's
  apply after such a change in the store.

Each Provisioner figure includes its res_pjsip reload. Printed ``name: value unit``,
with the UpdateConfig messages each sent and the load average before each count.

    .venv/bin/python bench/config_push.py [--phones 100,500,2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.*

from cti.ami.client import AmiClient
from cti.ami.config_push import ConfigFile, push
from phones.pjsip import FILE_NAME, PhoneEntry, config_file, config_files
from phones.provisioner import Provisioner
from tests.acceptance.harness import ami_client, start_test_asterisk, stop_test_asterisk


def phones(n: int) -> list[PhoneEntry]:
    return [
        PhoneEntry(f"p{i:05d}", "sip" if i % 2 else "webrtc", "cti", f"{i:032x}") for i in range(n)
    ]


async def timed(what: Callable[[], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    await what()
    return time.perf_counter() - t0


async def run_count(ami: AmiClient, n: int) -> None:
    print(f"load average before {n} phones: {os.getloadavg()[0]:.2f} loadavg", flush=True)
    book = phones(n)
    # start from nothing: every file holds only the base (the one file then the phones)
    empty = Provisioner(ami)
    assert await empty.apply(config_files([]))
    one = config_file(book)
    sent = 0

    async def whole(conf: ConfigFile) -> None:
        nonlocal sent
        sent += await push(ami, conf)

    base_s = await timed(lambda: whole(one))
    print(f"{n} phones one file whole: {base_s:.3f} s")
    print(f"{n} phones one file whole messages: {sent} messages")
    await push(ami, ConfigFile(FILE_NAME, one.base, ()))  # the phones leave the one file
    sent = 0

    async def all_whole() -> None:
        for conf in config_files(book):
            await whole(conf)

    s = await timed(all_whole)
    print(f"{n} phones files whole: {s:.3f} s")
    print(f"{n} phones files whole messages: {sent} messages")
    print(f"{n} phones speed-up of files whole: {base_s / s:.1f} x")

    prov = Provisioner(ami)

    async def apply(label: str, book: list[PhoneEntry]) -> None:
        before = prov.messages
        s = await timed(lambda: prov.apply(config_files(book)))
        print(f"{n} phones {label}: {s:.3f} s")
        print(f"{n} phones {label} messages: {prov.messages - before} messages")
        print(f"{n} phones speed-up of {label}: {base_s / s:.1f} x")

    await apply("connect unchanged", book)
    changed = list(book)
    changed[n // 2] = PhoneEntry(book[n // 2].name, "sip", "cti", "f" * 32)
    await apply("one phone changed", changed)
    await apply("one phone added", [*changed, PhoneEntry("zz-new", "sip", "cti", "e" * 32)])
    await apply("one phone removed", changed)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phones", default="100,500,2000")
    args = ap.parse_args()
    inst = start_test_asterisk("-bench-push")
    ami = ami_client(inst)
    try:
        await ami.start()
        await ami.wait_connected(timeout=10)
        for n in (int(x) for x in args.phones.split(",")):
            await run_count(ami, n)
    finally:
        await ami.close()
        stop_test_asterisk(inst)


if __name__ == "__main__":
    asyncio.run(main())
