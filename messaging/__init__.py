"""SMS and e-mail to customers: templates, opt-out, the timeline's messages with their
delivery status, mass sends with throttling, and the missed-call rule (docs/messaging.md)."""
