"""cti/web."""
