"""The query API for central systems: positions, on-hand, events, quarantine and gateway state."""
