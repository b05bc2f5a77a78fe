"""The supervisor's console: pages that run the center from the browser (issue #15)."""
