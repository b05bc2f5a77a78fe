"""crm_bridge: the call center's customer store and its bridge to external CRMs.

Customers (companies or persons) with contacts, phone numbers (raw + E.164), emails;
interactions (one per call, upserted by Linkedid on ``CallCompleted``); leads; a public
pool; care lists; CSV/Excel import and export; an audit trail; outbound signed webhooks;
an optional external caller lookup. The daemon loads :class:`crm_bridge.feature.CrmFeature`
which offers :class:`cti.services.CustomerDirectory` to the IVR, the ACD and screen pops.
See docs/crm.md.
"""
