"""From raw reads to EPCIS-aligned events: one module per kind of read."""
