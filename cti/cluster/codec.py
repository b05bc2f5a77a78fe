"""Domain events to bytes and back, for the broker (cti.cluster.natsbus).

An envelope is JSON: ``{"id", "node", "type", "event"}``. Values are tagged where JSON has
no type of its own (datetimes, tuples, nested dataclasses), so an event decodes to the
same frozen dataclass, equal to the one published. Event types are looked up by class
name among the subclasses of :class:`cti.events.DomainEvent` that are imported (every
feature's events are, once the daemon has loaded the features); an unknown type is a
:class:`CodecError`, never a guess.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cti.events import DomainEvent

__all__ = [
    "CodecError", "Envelope", "decode", "decode_batch", "decode_value", "encode", "encode_batch",
    "encode_value", "event_types", "known_classes",
]  # fmt: skip


class CodecError(ValueError):
    """A message that is not an envelope this node can read."""


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str  # unique per event: the broker's and the subscribers' dedupe key
    node: str  # the node that published it
    event: DomainEvent
    at: float = 0.0  # when it was published (time.time() on its node): the bus delay


def _all_subclasses(cls: type[Any]) -> list[type[Any]]:
    out: list[type[Any]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def event_types() -> dict[str, type[DomainEvent]]:
    return {cls.__name__: cls for cls in _all_subclasses(DomainEvent)}


def known_classes() -> dict[str, type[Any]]:
    # nested values of events (ChannelInfo, CallRecord) live beside them in cti.events
    import cti.events as events_module

    found: dict[str, type[Any]] = {}
    for name, value in vars(events_module).items():
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            found[name] = value
    found.update(event_types())
    return found


def _enc(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, date):
        return {"$d": value.isoformat()}
    if isinstance(value, tuple):
        return {"$tu": [_enc(v) for v in value]}
    if isinstance(value, list):
        return [_enc(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise CodecError("only string keys cross the broker")
        return {"$m": {k: _enc(v) for k, v in value.items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _enc(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"$dc": type(value).__name__, "f": fields}
    raise CodecError(f"cannot send a {type(value).__name__} across the broker")


def _dec(value: Any, classes: dict[str, type[Any]]) -> Any:
    if isinstance(value, list):
        return [_dec(v, classes) for v in value]
    if not isinstance(value, dict):
        return value
    if "$dt" in value:
        return datetime.fromisoformat(value["$dt"])
    if "$d" in value:
        return date.fromisoformat(value["$d"])
    if "$tu" in value:
        return tuple(_dec(v, classes) for v in value["$tu"])
    if "$m" in value:
        return {k: _dec(v, classes) for k, v in value["$m"].items()}
    if "$dc" in value:
        cls = classes.get(value["$dc"])
        if cls is None:
            raise CodecError(f"unknown type {value['$dc']!r}")
        fields = {k: _dec(v, classes) for k, v in value["f"].items()}
        try:
            return cls(**fields)
        except TypeError as exc:
            raise CodecError(f"{value['$dc']}: {exc}") from None
    raise CodecError("untagged object")


def encode_value(value: Any) -> str:
    """A value (dataclasses, tuples, datetimes... as in events) as JSON text."""
    return json.dumps(_enc(value), ensure_ascii=False, separators=(",", ":"))


def decode_value(text: str, classes: dict[str, type[Any]]) -> Any:
    """:func:`encode_value`'s text back to an equal value (dataclasses from ``classes``)."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise CodecError(f"not JSON: {exc}") from None
    return _dec(raw, classes)


def _envelope_dict(envelope: Envelope) -> dict[str, Any]:
    return {"id": envelope.id, "node": envelope.node, "at": envelope.at,
            "event": _enc(envelope.event)}  # fmt: skip


def encode(envelope: Envelope) -> bytes:
    return json.dumps(_envelope_dict(envelope), separators=(",", ":")).encode()


def encode_batch(envelopes: list[Envelope]) -> bytes:
    """Several envelopes in one broker message (one publish and one acknowledgement for
    all of them: the per-message cost is what limits a Python node, not the bytes)."""
    return json.dumps(
        {"batch": [_envelope_dict(e) for e in envelopes]}, separators=(",", ":")
    ).encode()


def _from_dict(raw: Any, classes: dict[str, type[Any]]) -> Envelope:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise CodecError("not an envelope")
    event = _dec(raw.get("event"), classes)
    if not isinstance(event, DomainEvent):
        raise CodecError("the envelope holds no domain event")
    at = raw.get("at", 0.0)
    return Envelope(
        id=raw["id"], node=str(raw.get("node", "")), event=event,
        at=float(at) if isinstance(at, int | float) else 0.0,
    )  # fmt: skip


def _load(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from None


def decode(data: bytes, classes: dict[str, type[Any]] | None = None) -> Envelope:
    """``classes``: :func:`known_classes` computed once by the caller (else looked up)."""
    return _from_dict(_load(data), classes if classes is not None else known_classes())


def decode_batch(
    data: bytes, classes: dict[str, type[Any]] | None = None
) -> tuple[list[Envelope], int]:
    """The envelopes of a broker message (a batch or a single envelope), and how many
    of its entries could not be read (skipped, never guessed)."""
    raw = _load(data)
    known = classes if classes is not None else known_classes()
    if not (isinstance(raw, dict) and isinstance(raw.get("batch"), list)):
        return [_from_dict(raw, known)], 0
    out: list[Envelope] = []
    bad = 0
    for item in raw["batch"]:
        try:
            out.append(_from_dict(item, known))
        except CodecError:
            bad += 1
    return out, bad
