"""Agents' phones provisioned from the store: browser phones (WebRTC) and SIP phones."""
