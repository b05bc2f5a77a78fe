"""Statistics: live wallboard figures and historical reports from queue_log."""
