"""Simulated RFID at dock doors: seeded passages of tagged pallets with the reads a portal would report.

`generate_passages` yields tag reads and photo-eye edges in time order together with the ground truth
(door, direction and EPCs of every passage), so a test can score the portal engine against what happened.
"""

from hw_sim.rfid.passages import (
    DoorLayout,
    Passage,
    PassageRun,
    PassageScenario,
    SimGpiEdge,
    SimTagRead,
    encode_sgtin96,
    encode_sscc96,
    generate_passages,
)

__all__ = [
    "DoorLayout",
    "Passage",
    "PassageRun",
    "PassageScenario",
    "SimGpiEdge",
    "SimTagRead",
    "encode_sgtin96",
    "encode_sscc96",
    "generate_passages",
]
