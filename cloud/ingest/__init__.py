"""The uplink: validation of events, the exactly-once commit of batches, and the IngestService stream."""
