"""The agent desktop: screen pops, the desktop page, click-to-call."""
