"""Event stores: they assign ids, keep history for replay, and feed the broker."""
