"""The simulated dock-door passages: replayable, in time order, and true to their own ground truth."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest

from edge.epc import decode_epc
from hw_sim.rfid import PassageScenario, SimGpiEdge, SimTagRead, encode_sgtin96, encode_sscc96, generate_passages


def test_encoders_match_the_tds_vectors() -> None:
    assert encode_sgtin96(614141, 812345, 6789, filter_value=3) == "3074257BF7194E4000001A85"
    assert encode_sscc96(614141, 1_234_567_890) == "31D4257BF4499602D2000000"
    with pytest.raises(ValueError, match="does not fit"):
        encode_sgtin96(614141, 812345, 2**38)


def test_same_seed_same_run_other_seed_other_run() -> None:
    scenario = PassageScenario(seed=7, passages=30)
    assert generate_passages(scenario) == generate_passages(scenario)
    assert generate_passages(PassageScenario(seed=8, passages=30)) != generate_passages(scenario)


def test_events_are_in_time_order_and_every_epc_decodes() -> None:
    run = generate_passages(PassageScenario(seed=3, passages=50, gpi=True))
    times = [event.seen_at for event in run.events]
    assert times == sorted(times)
    epcs = {event.epc_hex for event in run.events if isinstance(event, SimTagRead)}
    schemes = Counter(decode_epc(epc).scheme for epc in epcs)
    assert set(schemes) == {"sgtin-96", "sscc-96"}
    assert schemes["sscc-96"] == 50
    assert sum(1 for event in run.events if isinstance(event, SimGpiEdge)) == 4 * 50


def test_ground_truth_matches_the_reads() -> None:
    run = generate_passages(PassageScenario(seed=5, passages=200))
    readers = {door.name: door.reader for door in run.scenario.doors}
    by_passage: dict[int, list[SimTagRead]] = {}
    for event in run.events:
        if isinstance(event, SimTagRead):
            by_passage.setdefault(event.passage, []).append(event)
    for passage in run.passages:
        reads = by_passage[passage.index]
        assert {read.epc_hex for read in reads} <= passage.epcs
        own = [read for read in reads if not read.cross_read]
        cross = [read for read in reads if read.cross_read]
        assert {read.reader for read in own} == {readers[passage.door]}
        assert {read.reader for read in cross} <= {readers[passage.cross_read_door]}
        assert {read.epc_hex for read in cross} == passage.cross_read_epcs
        assert passage.cross_read_door != passage.door


def test_the_drop_rate_and_cross_read_share_are_what_the_scenario_says() -> None:
    kept = generate_passages(PassageScenario(seed=9, passages=300, read_drop_probability=0.0))
    dropped = generate_passages(PassageScenario(seed=9, passages=300, read_drop_probability=0.3))
    ratio = len(dropped.events) / len(kept.events)
    assert 0.66 < ratio < 0.74
    tags = sum(len(passage.epcs) for passage in kept.passages)
    cross = sum(len(passage.cross_read_epcs) for passage in kept.passages)
    assert 0.2 < cross / tags < 0.3


def test_same_door_passages_leave_the_door_free_in_between() -> None:
    scenario = PassageScenario(seed=11, passages=200)
    run = generate_passages(scenario)
    last_end: dict[str, datetime] = {}
    for passage in run.passages:
        if passage.door in last_end:
            gap_ms = (passage.started_at - last_end[passage.door]).total_seconds() * 1000
            assert gap_ms >= scenario.door_gap_ms_min
        last_end[passage.door] = passage.ended_at
    doors_busy_together = sum(
        1
        for earlier, later in zip(run.passages, run.passages[1:], strict=False)
        if earlier.door != later.door and later.started_at < earlier.ended_at
    )
    assert doors_busy_together > 10  # the two doors do work at the same time


def test_scenario_is_checked() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        PassageScenario(read_drop_probability=1.0)
    with pytest.raises(ValueError, match="cases_min"):
        PassageScenario(cases_min=0)
