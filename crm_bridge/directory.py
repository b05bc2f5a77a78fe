""":class:`cti.services.CustomerDirectory` over the CRM store, with an optional external
CRM lookup when the local store does not know the number.

The external lookup is ``GET {url}?number=<E.164>`` answering JSON
``{"name": ..., "company": ..., "tier": ..., "id": ...}`` (404 = unknown). It is bounded
by a timeout, and its answers (hits and misses) are cached for ``cache_ttl_s`` in a
bounded LRU, so a slow or dead external CRM costs a call at most ``timeout_s`` once per
number per TTL. Any error is a miss (logged), never an exception into the call path.

:class:`StoreDirectory` answers from :class:`CardCache` (decision 0027): the caller is
known from the call's entry on (the desktop, the IVR and the ACD ask at entry), so by the
ring the card is in memory, and the recorder's lookup at the answer is a dictionary hit.
Lookups read through :meth:`cti.store.db.Database.fetch` (never queued behind writers, one
hop for the card and its recent interactions; Core statements compiled once, rows as
tuples, no ORM session: the pops' loop shares the GIL with these reads); concurrent
lookups of one number share one query. The cache is cleared when a transaction that
wrote customers, contacts or phones commits (history: interactions of that customer),
whoever wrote it in this process (ORM session events, :func:`_watch`); writes from
another process (``cti crm import``) show after ``ttl_s`` at the latest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import aiohttp
from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from crm_bridge.config import ExternalLookup
from crm_bridge.keys import tags_list
from crm_bridge.models import Contact, Customer, Interaction, Phone
from crm_bridge.records import iso
from crm_bridge.store import CrmStore
from cti.services import CustomerCard
from cti.store.hot_read import Plan, Statement
from cti.store.models import CleanText, clip_text
from cti.web.body import read_body

log = logging.getLogger(__name__)

MAX_EXTERNAL_BODY = 64 * 1024
K = TypeVar("K")
V = TypeVar("V")

#: tables whose change may change the card of some number
CARD_TABLES = frozenset({"crm_customers", "crm_contacts", "crm_phones"})
HISTORY_TABLE = "crm_interactions"
_CARD_CLASSES = (Customer, Contact, Phone)


class TtlCache(Generic[K, V]):
    """A bounded LRU of values that expire, with a generation: :meth:`clear` bumps it, and
    :meth:`fetch` stores what it computed only if no clear happened meanwhile (a lookup
    that read before a write must not put the old card back after the write's clear).

    With ``group`` (a key's group, e.g. the customer of a history entry),
    :meth:`clear_group` forgets one group's keys and stops only that group's loads in
    flight from storing: a write about one customer does not throw away every other
    customer's lookup in progress (during a burst an interaction commits every few
    milliseconds; a global clear there meant no history was ever cached, and every pop
    read it again, behind the card, within the desktop's time bound)."""

    def __init__(
        self, ttl_s: float, size: int, group: Callable[[K], Hashable] | None = None
    ) -> None:
        self.ttl_s, self.size = ttl_s, size
        self.generation = 0
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._inflight: dict[K, asyncio.Future[V]] = {}
        self.hits = self.misses = 0
        self._group = group
        self._changes = 0  # group clears so far
        self._changed_at: dict[Hashable, int] = {}  # group -> _changes at its last clear
        self._keys: dict[Hashable, set[K]] = {}  # group -> its cached keys

    def mark(self) -> tuple[int, int]:
        """Where the cache's changes stand: take it before reading what :meth:`may_store`
        will be asked about."""
        return self.generation, self._changes

    def may_store(self, key: K, mark: tuple[int, int]) -> bool:
        """No clear since ``mark`` concerned ``key`` (a global one, or its group's)."""
        if mark[0] != self.generation:
            return False
        return self._group is None or self._changed_at.get(self._group(key), 0) <= mark[1]

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> tuple[bool, V | None]:
        item = self._items.get(key)
        if item is None or item[0] <= time.monotonic():
            return False, None
        self._items.move_to_end(key)
        return True, item[1]

    def put(self, key: K, value: V) -> None:
        self._items[key] = (time.monotonic() + self.ttl_s, value)
        self._items.move_to_end(key)
        if self._group is not None:
            self._keys.setdefault(self._group(key), set()).add(key)
        while len(self._items) > self.size:
            self._forget(self._items.popitem(last=False)[0])

    def _forget(self, key: K) -> None:
        if self._group is not None:
            group = self._group(key)
            keys = self._keys.get(group)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys[group]

    def clear(self, key: K | None = None) -> None:
        """Forget ``key`` (or everything) and make lookups in flight not store."""
        self.generation += 1
        if key is None:
            self._items.clear()
            self._keys.clear()
            self._changed_at.clear()
        elif self._items.pop(key, None) is not None:
            self._forget(key)

    def clear_group(self, group: Hashable) -> None:
        """Forget ``group``'s keys; its loads in flight do not store (others do)."""
        if len(self._changed_at) >= self.size:  # bounded: forget it all instead
            self.clear()
            return
        self._changes += 1
        self._changed_at[group] = self._changes
        for key in self._keys.pop(group, set()):
            self._items.pop(key, None)

    async def fetch(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value, else ``load()``'s: one load per key at a time, in its own task
        (a caller that gives up does not cancel it: it still warms the cache)."""
        found, value = self.get(key)
        if found:
            self.hits += 1
            return value  # type: ignore[return-value]
        self.misses += 1
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key, load, self.mark()))
            task.add_done_callback(_retrieved)
            self._inflight[key] = task
        return await asyncio.shield(task)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]], mark: tuple[int, int]) -> V:
        try:
            value = await load()
            if self.may_store(key, mark):
                self.put(key, value)
            return value
        finally:
            self._inflight.pop(key, None)


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # the callers re-raise it; nobody else must be told


class CardCache:
    """Cards by E.164 number (``None``: not a customer) and recent interactions by
    customer id, for ``ttl_s`` at most, cleared on CRM writes (:func:`_watch`)."""

    def __init__(self, ttl_s: float = 300.0, size: int = 50_000) -> None:
        self.cards: TtlCache[str, CustomerCard | None] = TtlCache(ttl_s, size)
        self.history: TtlCache[tuple[int, int], list[dict[str, object]]] = TtlCache(
            ttl_s, size, group=_customer_of
        )

    def cards_changed(self) -> None:
        self.cards.clear()

    def history_changed(self, customer_ids: set[int] | None) -> None:
        """Interactions of ``customer_ids`` changed (None: of anyone, e.g. a bulk
        statement): their history entries go, and loads of theirs in flight do not store."""
        if customer_ids is None:
            self.history.clear()
            return
        for customer_id in customer_ids:
            self.history.clear_group(customer_id)


def _customer_of(key: tuple[int, int]) -> int:
    return key[0]


# every directory's cache, by the writer engine whose commits can change it
_WATCHED: weakref.WeakValueDictionary[int, CardCache] = weakref.WeakValueDictionary()
_LISTENING = False


def _table_of(state: ORMExecuteState) -> str:
    table = getattr(state.statement, "table", None)
    return str(getattr(table, "name", ""))


def _on_execute(state: ORMExecuteState) -> None:
    """Bulk statements (``session.execute(update(Phone)...)``) bypass the unit of work."""
    if state.is_insert or state.is_update or state.is_delete:
        name = _table_of(state)
        info = state.session.info
        if name in CARD_TABLES:
            info["crm_cards_dirty"] = True
        elif name == HISTORY_TABLE:
            info["crm_history_dirty"] = None  # unknown customers: all


def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    info = session.info
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, _CARD_CLASSES):
            info["crm_cards_dirty"] = True
        elif isinstance(obj, Interaction):
            ids = info.setdefault("crm_history_dirty", set())
            if ids is not None and obj.customer_id is not None:
                ids.add(obj.customer_id)


def _after_commit(session: Session) -> None:
    info = session.info
    cards = info.pop("crm_cards_dirty", False)
    history = info.pop("crm_history_dirty", False)
    if not cards and history is False:
        return
    cache = _WATCHED.get(id(session.bind))
    if cache is None:
        return
    if cards:
        cache.cards_changed()
    if history is not False:
        cache.history_changed(history)


def _after_rollback(session: Session) -> None:
    session.info.pop("crm_cards_dirty", None)
    session.info.pop("crm_history_dirty", None)


def history_written(engine: Any, customer_ids: set[int], *, cards: bool = False) -> None:
    """Interactions of ``customer_ids`` (and with ``cards``, a customer, contact or phone)
    were written and committed on ``engine`` (the writer's synchronous engine) outside an
    ORM session (:meth:`Database.write`): their history (every card) goes from the card
    cache, as :func:`_after_commit` clears it for a session whose flush touched them.
    Call it once the write has committed, not before."""
    if not customer_ids and not cards:
        return
    cache = _WATCHED.get(id(engine))
    if cache is None:
        return
    if cards:
        cache.cards_changed()
    if customer_ids:
        cache.history_changed(customer_ids)


def _watch(engine: Any, cache: CardCache) -> None:
    global _LISTENING
    _WATCHED[id(engine)] = cache
    if not _LISTENING:
        event.listen(Session, "do_orm_execute", _on_execute)
        event.listen(Session, "after_flush", _after_flush)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
        _LISTENING = True


class ExternalCrmLookup:
    def __init__(self, config: ExternalLookup) -> None:
        self.config = config
        self._cache: OrderedDict[str, tuple[float, CustomerCard | None]] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None

    @property
    def enabled(self) -> bool:
        return self.config.url is not None

    async def lookup(self, e164: str) -> CustomerCard | None:
        if self.config.url is None or not e164:
            return None
        now = time.monotonic()
        hit = self._cache.get(e164)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(e164)
            return hit[1]
        card = await self._fetch(str(self.config.url), e164)
        self._cache[e164] = (now + self.config.cache_ttl_s, card)
        self._cache.move_to_end(e164)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)
        return card

    async def _fetch(self, url: str, e164: str) -> CustomerCard | None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
            async with self._session.get(url, params={"number": e164}, timeout=timeout) as resp:
                if resp.status != 200:
                    return None
                body = await read_body(resp.content, MAX_EXTERNAL_BODY)
                if len(body) > MAX_EXTERNAL_BODY:
                    log.warning("external CRM answer too large for %s", e164)
                    return None
                data = json.loads(body)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("external CRM lookup failed: %s", type(exc).__name__)
            return None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        return CustomerCard(
            customer_id=0,
            name=clip_text(data["name"], 256),
            company=clip_text(str(data.get("company") or ""), 256),
            tier=clip_text(str(data.get("tier") or ""), 32),
            notes=clip_text(f"external:{data.get('id', '')}", 256),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


#: interactions loaded with a card (the desktop's default ``history_limit``)
PREFETCH_HISTORY = 5


_HISTORY_FIELDS = (
    "id", "linkedid", "customer_id", "contact_id", "kind", "caller_num", "agent", "queue",
    "started_at", "ended_at", "wait_s", "talk_s", "outcome", "disposition", "notes",
    "recording", "ivr_path", "survey_score", "updated_at",
)  # fmt: skip
_HISTORY_DATES = frozenset({"started_at", "ended_at", "updated_at"})
_HISTORY = Statement(
    select(*(getattr(Interaction, f) for f in _HISTORY_FIELDS))
    .where(Interaction.customer_id == bindparam("customer_id"))
    .order_by(Interaction.started_at.desc(), Interaction.id.desc())
    .limit(bindparam("limit"))
)
_CARD = Statement(
    select(
        Customer.id, Customer.name, Customer.company, Customer.tier, Customer.owner,
        Customer.tags, Customer.notes, Contact.birthday, Contact.id, Contact.name,
    )
    .join(Phone, Phone.customer_id == Customer.id)
    .join(Contact, Contact.id == Phone.contact_id)
    # compared as a lookup value (cleaned, never refused for its length)
    .where(Phone.e164 == bindparam("e164", type_=CleanText()))
    .order_by(Phone.id)
    .limit(1)
)  # fmt: skip


def _interaction(row: tuple[Any, ...]) -> dict[str, object]:
    """:func:`crm_bridge.records.interaction_dict` of a ``_HISTORY`` row."""
    return {
        f: iso(v) if f in _HISTORY_DATES else v for f, v in zip(_HISTORY_FIELDS, row, strict=True)
    }


def _history(customer_id: int, limit: int) -> Plan[list[dict[str, object]]]:
    rows = yield _HISTORY(customer_id=customer_id, limit=limit)
    return [_interaction(row) for row in rows]


def _card_and_history(
    e164: str, limit: int
) -> Plan[tuple[CustomerCard, list[dict[str, object]]] | None]:
    """The card of ``e164`` and its customer's ``limit`` latest interactions, in one hop
    (:meth:`cti.store.db.Database.fetch`)."""
    rows = yield _CARD(e164=e164)
    if not rows:
        return None
    (
        customer_id, name, company, tier, owner, tags, notes, birthday, contact_id,
        contact_name,
    ) = rows[0]  # fmt: skip
    card = CustomerCard(
        customer_id=customer_id,
        name=name,
        company=company,
        tier=tier,
        owner_agent=owner or "",
        tags=tuple(tags_list(tags)),
        notes=notes,
        birthday=birthday,
        contact_id=contact_id,
        contact_name=contact_name,
    )
    return card, (yield from _history(customer_id, limit))


class StoreDirectory:
    """What the IVR, ACD, pops and recordings use to know who is calling."""

    def __init__(
        self,
        store: CrmStore,
        external: ExternalCrmLookup | None = None,
        cache: CardCache | None = None,
    ) -> None:
        self.store = store
        self.external = external
        self.cache = cache if cache is not None else CardCache()
        _watch(store.db.engine.sync_engine, self.cache)

    async def lookup_number(self, e164: str) -> CustomerCard | None:
        if not isinstance(e164, str) or not e164 or len(e164) > 32:
            return None
        if not e164.startswith("+"):
            e164 = self.store.e164(e164)
            if not e164:
                return None
        return await self.cache.cards.fetch(e164, lambda: self._load_card(e164))

    async def _load_card(self, e164: str) -> CustomerCard | None:
        # one round trip: the card and the interactions the pop shows right after it
        history = self.cache.history
        mark = history.mark()
        found = await self.store.db.fetch(lambda: _card_and_history(e164, PREFETCH_HISTORY))
        if found is None:
            if self.external is not None:
                return await self.external.lookup(e164)
            return None
        card, recent = found
        key = (card.customer_id, PREFETCH_HISTORY)
        if history.may_store(key, mark):
            history.put(key, recent)
        return card

    async def recent_interactions(
        self, customer_id: int, limit: int = 5
    ) -> list[dict[str, object]]:
        limit = max(1, min(int(limit), 100))
        rows = await self.cache.history.fetch(
            (customer_id, limit),
            lambda: self.store.db.fetch(lambda: _history(customer_id, limit)),
        )
        return list(rows)

    async def close(self) -> None:
        if self.external is not None:
            await self.external.close()
