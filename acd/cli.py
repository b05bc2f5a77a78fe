"""``cti acd …``: configure queues and agents in the store from the command line.

The running daemon applies queue parameters at its next AMI connect (or through the REST
API at once); agents log in / pause through the REST API (or their desktop).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TypeVar

from acd import store
from cti.cli import config_errors_exit, settings_of, with_store
from cti.store.db import Database

__all__ = ["register"]

T = TypeVar("T")


def _run(args: argparse.Namespace, work: Callable[[Database], Awaitable[T]]) -> T:
    return with_store(settings_of(args), work)


def _queues(args: argparse.Namespace) -> int:
    for q in _run(args, store.list_queues):
        print(json.dumps(asdict(q)))
    return 0


def _queue_set(args: argparse.Namespace) -> int:
    try:
        params = store.queue_params(args.name, json.loads(args.params))
    except (ValueError, store.ConfigInvalid) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def put(db: Database) -> None:
        await store.put_queue(db, params)

    _run(args, put)
    return 0


def _agents(args: argparse.Namespace) -> int:
    for a in _run(args, store.list_agents):
        print(json.dumps(a))
    return 0


def _agent_set(args: argparse.Namespace) -> int:
    try:
        store.check_agent_name(args.name)
        devices = []
        for d in args.device:
            kind, _, address = d.partition(":")
            devices.append(store.check_device(kind, address))
        skills: dict[str, int] = {}
        for s in args.skill:
            queue, _, penalty = s.partition("=")
            store.check_queue_name(queue)
            if not penalty.isdigit() or int(penalty) > 1000:
                raise store.ConfigInvalid("a penalty is an integer 0..1000")
            skills[queue] = int(penalty or 0)
    except store.ConfigInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def put(db: Database) -> None:
        await store.put_agent(db, args.name, args.display_name, devices, skills)

    _run(args, put)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("acd", help="queues and agents (ACD)")
    acd_sub = p.add_subparsers(dest="acd_command", required=True)
    q = acd_sub.add_parser("queues", help="list queues")
    q.set_defaults(func=config_errors_exit(_queues))
    q = acd_sub.add_parser("queue-set", help="create/update a queue")
    q.add_argument("name")
    q.add_argument("params", help='JSON object, e.g. \'{"strategy": "linear", "wrapup_s": 10}\'')
    q.set_defaults(func=config_errors_exit(_queue_set))
    a = acd_sub.add_parser("agents", help="list agents")
    a.set_defaults(func=config_errors_exit(_agents))
    a = acd_sub.add_parser("agent-set", help="create/update an agent")
    a.add_argument("name")
    a.add_argument("--display-name", default="")
    a.add_argument("--device", action="append", default=[], help="sip:ENDPOINT | mobile:NUMBER")
    a.add_argument("--skill", action="append", default=[], help="QUEUE=PENALTY")
    a.set_defaults(func=config_errors_exit(_agent_set))
