""":class:`cti.services.CustomerDirectory` over the CRM store, with an optional external
CRM lookup when the local store does not know the number.

The external lookup is ``GET {url}?number=<E.164>`` answering JSON
``{"name": ..., "company": ..., "tier": ..., "id": ...}`` (404 = unknown). It is bounded
by a timeout, and its answers (hits and misses) are cached for ``cache_ttl_s`` in a
bounded LRU, so a slow or dead external CRM costs a call at most ``timeout_s`` once per
number per TTL. Any error is a miss (logged), never an exception into the call path.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict

import aiohttp
from sqlalchemy import select

from crm_bridge.config import ExternalLookup
from crm_bridge.keys import tags_list
from crm_bridge.models import Contact, Customer, Interaction, Phone
from crm_bridge.records import interaction_dict
from crm_bridge.store import CrmStore
from cti.services import CustomerCard
from cti.store.models import clip_text

log = logging.getLogger(__name__)

MAX_EXTERNAL_BODY = 64 * 1024


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
                body = await resp.content.read(MAX_EXTERNAL_BODY + 1)
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


class StoreDirectory:
    """What the IVR, ACD and pops use to know who is calling."""

    def __init__(self, store: CrmStore, external: ExternalCrmLookup | None = None) -> None:
        self.store = store
        self.external = external

    async def lookup_number(self, e164: str) -> CustomerCard | None:
        if not isinstance(e164, str) or not e164 or len(e164) > 32:
            return None
        if not e164.startswith("+"):
            e164 = self.store.e164(e164)
            if not e164:
                return None
        async with self.store.db.session() as session:
            row = (
                await session.execute(
                    select(Customer, Contact)
                    .join(Phone, Phone.customer_id == Customer.id)
                    .join(Contact, Contact.id == Phone.contact_id)
                    .where(Phone.e164 == e164)
                    .order_by(Phone.id)
                    .limit(1)
                )
            ).first()
        if row is None:
            if self.external is not None:
                return await self.external.lookup(e164)
            return None
        customer, contact = row
        return CustomerCard(
            customer_id=customer.id,
            name=customer.name,
            company=customer.company,
            tier=customer.tier,
            owner_agent=customer.owner or "",
            tags=tuple(tags_list(customer.tags)),
            notes=customer.notes,
            birthday=contact.birthday,
            contact_id=contact.id,
            contact_name=contact.name,
        )

    async def recent_interactions(
        self, customer_id: int, limit: int = 5
    ) -> list[dict[str, object]]:
        limit = max(1, min(int(limit), 100))
        async with self.store.db.session() as session:
            rows = await session.scalars(
                select(Interaction)
                .where(Interaction.customer_id == customer_id)
                .order_by(Interaction.started_at.desc(), Interaction.id.desc())
                .limit(limit)
            )
            return [interaction_dict(i) for i in rows]

    async def close(self) -> None:
        if self.external is not None:
            await self.external.close()
