"""The IVR: menus as data (menus.py), schedules (schedule.py), prompts (prompts.py), the
call flow over FastAGI (flow.py) and the feature wiring it into the daemon (feature.py).
See docs/ivr.md."""
