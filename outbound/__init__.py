"""Outbound telesales: campaigns, lead lists, do-not-call, pacing and the dialer (issue 16)."""
