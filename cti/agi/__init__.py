"""FastAGI: an I/O-free AGI codec (:mod:`cti.agi.protocol`) and an asyncio server
(:mod:`cti.agi.server`). See docs/decisions/0004-fastagi.md for why it is our own."""
