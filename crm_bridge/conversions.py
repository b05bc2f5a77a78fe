"""The CRM as :class:`cti.services.SalesPipeline`: a telesales conversion (outbound) becomes
a customer with an opportunity. The customer is the one given, else the one owning the
number, else a new one owned by the converting agent; the opportunity (source
``outbound``, owned by the agent) is won for a sale and ``contacted`` for an interested
prospect, its notes the agent's. Every change is audited as done by the agent."""

from __future__ import annotations

from sqlalchemy import select

from crm_bridge.access import SYSTEM, Actor
from crm_bridge.models import Customer, Phone
from crm_bridge.pool import Pool
from crm_bridge.schemas import CustomerIn, LeadIn, LeadPatch
from cti.services import Conversion

__all__ = ["StoreSalesPipeline"]


class StoreSalesPipeline:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def record_conversion(self, conversion: Conversion) -> int:
        store = self.pool.store
        e164 = store.e164(conversion.number)
        customer_id = conversion.customer_id
        async with store.db.session() as session:
            if customer_id is not None and await session.get(Customer, customer_id) is None:
                customer_id = None
            if customer_id is None and e164:
                customer_id = await session.scalar(
                    select(Phone.customer_id).where(Phone.e164 == e164).order_by(Phone.id).limit(1)
                )
        agent = conversion.agent[:128] or "system"
        if customer_id is None:
            created = await store.create_customer(
                CustomerIn(
                    name=(conversion.name or conversion.number or "?")[:256],
                    phones=[conversion.number] if e164 else [],
                    owner=agent,
                    force=True,
                ),
                SYSTEM,
            )
            customer_id = int(created["id"])
        title = f"{conversion.campaign or 'outbound'}: {conversion.kind}"[:256]
        lead = await self.pool.create_lead(
            LeadIn(
                customer_id=customer_id, title=title, notes=conversion.note[:16384], owner=agent
            ),
            SYSTEM,
            source="outbound",
        )
        status = "won" if conversion.kind == "sale" else "contacted"
        await self.pool.update_lead(lead["id"], LeadPatch(status=status), Actor(agent, "admin"))
        return customer_id
