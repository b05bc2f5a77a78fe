"""Several daemon nodes: the event bus across nodes, the lease on each Asterisk server."""
