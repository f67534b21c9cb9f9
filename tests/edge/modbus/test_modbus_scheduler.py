"""The bus's due-time queue: seeded phase offsets, rotation on ties, skipping missed cycles."""

from __future__ import annotations

import random

import pytest

from edge.drivers.modbus_bus.scheduler import PHASE_OFFSET_MS_MAX, PollScheduler, next_cycle_due_s


def test_phase_offsets_are_small_seeded_and_spread() -> None:
    def first_dues(seed: int) -> list[float]:
        scheduler = PollScheduler([5000] * 6 + [200], now_s=100.0, rng=random.Random(seed))
        dues = []
        while len(scheduler):
            index, due_s = scheduler.take()
            dues.append((index, due_s))
        return [due for _, due in sorted(dues)]

    dues = first_dues(7)
    assert dues == first_dues(7)
    assert dues != first_dues(8)
    assert all(100.0 <= due <= 100.0 + PHASE_OFFSET_MS_MAX / 1000 for due in dues[:6])
    assert 100.0 <= dues[6] <= 100.2  # never more than the device's own interval
    assert len(set(dues)) == len(dues)


def test_ties_rotate_first_come_first_served() -> None:
    scheduler = PollScheduler([1000, 1000, 1000], now_s=0.0, rng=random.Random(1))
    taken = [scheduler.take() for _ in range(3)]
    for index, _ in taken:
        scheduler.give_back(index, 5.0)
    order = []
    for _ in range(3):
        index, _due_s = scheduler.take()
        order.append(index)
        scheduler.give_back(index, 5.0)  # a retry due now: behind the others due at the same time
    assert order == [index for index, _ in taken]
    assert scheduler.peek() == (order[0], 5.0)


def test_a_device_must_be_taken_before_it_is_given_back() -> None:
    scheduler = PollScheduler([1000], now_s=0.0, rng=random.Random(1))
    with pytest.raises(AssertionError):
        scheduler.give_back(0, 1.0)


@pytest.mark.parametrize(
    ("cycle_due_s", "now_s", "expected"),
    [
        (10.0, 10.05, 11.0),  # on time: keep the phase
        (10.0, 10.99, 11.0),
        (10.0, 11.2, 12.0),  # missed one cycle: skip it rather than ask twice in a row
        (10.0, 15.5, 16.0),
    ],
)
def test_next_cycle_keeps_the_phase_and_skips_missed_cycles(cycle_due_s: float, now_s: float, expected: float) -> None:
    assert next_cycle_due_s(cycle_due_s, 1.0, now_s) == pytest.approx(expected)
