"""Runners that put the simulated devices of a dock door on the wire for `tallyport-sim`."""
