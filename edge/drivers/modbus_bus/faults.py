"""Fault episodes of one Modbus device: a fault that repeats on every poll is quarantined once, not per poll.

A broken sensor element (a probe reading 0x7FFF), a profile that does not fit the device (an exception
response to every request) or a line that garbles every answer fails every poll until someone fixes it. One
quarantine row per poll would bury everything else in the quarantine and grow the outbox by the hour. So
faults are tracked as episodes, per device and *subject*: the measurement whose value was rejected (each
sensor element fails on its own), or the register block whose response could not be read (garbled,
exception response).

* A fault on a subject with no open episode opens one: the fault goes to the quarantine as it is, with its
  bad value and raw bytes, and is logged once (warning).
* The same fault kind (reason code) on that subject again is a repeat: counted, neither quarantined nor
  logged.
* A different kind on the same subject ends the episode and opens a new one: a new row.
* A good answer for the subject ends the episode, logged once (info) with its repeat count.
* Repeats never vanish: an episode that ends with repeats not yet reported yields one ``fault_repeats`` row
  saying how many polls were rejected the same way, from when to when, with the last one's raw bytes. While
  an episode lasts, such a row is also written every ``fault_summary_interval_ms`` (config), so that a long
  fault shows its extent in the quarantine and an agent restart loses at most one interval's count.

Silence (no response) is neither a fault nor a recovery: the device's availability reports it.

Memory: episodes live in the process, at most one per measurement and register block of each device
(bounded by its profile). A restarted agent opens a new episode for a fault still present: one more row.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

__all__ = ["FaultCode", "FaultEpisodes", "ModbusFault", "block_subject"]

logger = logging.getLogger(__name__)

FaultCode = Literal["garbled", "exception_response", "not_finite", "out_of_range", "short_response", "fault_repeats"]
REPEATS_NOTE = "; repeats of this fault are counted, not stored, until it clears"


@dataclass(frozen=True, slots=True)
class ModbusFault:
    """A response that cannot become a reading, kept with its bytes for the quarantine."""

    bus: str
    device: str
    """The device's config name (``SensorReading.device_id`` of its readings)."""
    reason_code: FaultCode
    reason: str
    raw: bytes
    """Garbled: the bytes received; exception: the exception PDU (function code | 0x80, code); a rejected
    value: the register bytes of the whole response; ``fault_repeats``: those of the last repeat."""
    seen_at: datetime
    raw_sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw_sha256", hashlib.sha256(self.raw).hexdigest())


def block_subject(function_code: int, address: int) -> str:
    """The subject of a fault about a whole response: the register block it answered."""
    return f"FC{function_code:02d} block at {address}"


@dataclass(slots=True)
class _Episode:
    subject: str
    first: ModbusFault
    last: ModbusFault
    reported_at: datetime  # seen_at of the last row written for this episode
    repeats: int = 0
    repeats_reported: int = 0
    unreported_since: datetime | None = None  # seen_at of the first repeat no row has counted yet


class FaultEpisodes:
    """The open fault episodes of one device; returns the faults that should reach the quarantine."""

    def __init__(self, bus: str, device: str, *, summary_interval_ms: int) -> None:
        assert summary_interval_ms > 0
        self._bus = bus
        self._device = device
        self._summary_interval = timedelta(milliseconds=summary_interval_ms)
        self._open: dict[str, _Episode] = {}
        self.repeats_total = 0
        """Faults counted into an open episode instead of becoming a row of their own."""

    @property
    def open_subjects(self) -> tuple[str, ...]:
        """Subjects with a fault episode open now, sorted."""
        return tuple(sorted(self._open))

    def fault(self, subject: str, fault: ModbusFault) -> list[ModbusFault]:
        """A fault about `subject`: the rows to quarantine (the fault itself, a summary, or none)."""
        episode = self._open.get(subject)
        if episode is not None and episode.first.reason_code == fault.reason_code:
            return self._repeat(episode, fault)
        rows = [] if episode is None else self._end(episode, fault.seen_at, f"became {fault.reason_code}")
        self._open[subject] = _Episode(subject, fault, fault, fault.seen_at)
        logger.warning(
            "modbus device %s: %s fault on %s: %s; further repeats are counted until it clears",
            self._device,
            fault.reason_code,
            subject,
            fault.reason,
            extra=self._log_fields(subject=subject, reason_code=fault.reason_code),
        )
        rows.append(replace(fault, reason=fault.reason + REPEATS_NOTE))
        return rows

    def clear(self, subject: str, now: datetime) -> list[ModbusFault]:
        """`subject` answered well at `now`: end its episode, if any; returns its summary row, if one is due."""
        episode = self._open.get(subject)
        return [] if episode is None else self._end(episode, now, "cleared")

    def _repeat(self, episode: _Episode, fault: ModbusFault) -> list[ModbusFault]:
        episode.repeats += 1
        episode.last = fault
        self.repeats_total += 1
        if episode.unreported_since is None:
            episode.unreported_since = fault.seen_at
        if fault.seen_at - episode.reported_at < self._summary_interval:
            return []
        return [self._summary(episode, "still failing")]

    def _end(self, episode: _Episode, now: datetime, how: str) -> list[ModbusFault]:
        del self._open[episode.subject]
        logger.info(
            "modbus device %s: %s fault on %s %s after %d repeat(s)",
            self._device,
            episode.first.reason_code,
            episode.subject,
            how,
            episode.repeats,
            extra=self._log_fields(
                subject=episode.subject, reason_code=episode.first.reason_code, repeats=episode.repeats
            ),
        )
        if episode.repeats == episode.repeats_reported:
            return []
        return [self._summary(episode, f"{how} at {now.isoformat()}")]

    def _summary(self, episode: _Episode, state: str) -> ModbusFault:
        count = episode.repeats - episode.repeats_reported
        since = episode.unreported_since or episode.last.seen_at
        episode.repeats_reported = episode.repeats
        episode.reported_at = episode.last.seen_at
        episode.unreported_since = None
        reason = (
            f"{episode.first.reason_code} on {episode.subject} repeated {count} more time(s) from "
            f"{since.isoformat()} to {episode.last.seen_at.isoformat()} ({episode.repeats} in this episode, "
            f"which began {episode.first.seen_at.isoformat()}); {state}; last: {episode.last.reason}"
        )
        return ModbusFault(self._bus, self._device, "fault_repeats", reason, episode.last.raw, episode.last.seen_at)

    def _log_fields(self, **fields: object) -> dict[str, object]:
        return {"bus": self._bus, "device": self._device, **fields}
