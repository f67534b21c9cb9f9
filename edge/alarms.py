"""The gateway's alarm registry: conditions an operator must act on, raised and cleared by the agent's parts.

The outbox raises `outbox_near_cap`, `outbox_shedding` and `outbox_full` around its disk cap and
`outbox_salvaged` when it had to salvage a damaged file at start; other parts (the clock, for skew)
may raise their own. The uplink sends the whole set to the cloud in a `GatewayStatus` after each
Hello and whenever it changes, so the cloud always holds the gateway's latest view: an alarm cleared
here is sent once more with `active = false`, and one the gateway no longer reports at all (after a
restart) is cleared by the cloud.

An alarm is identified by its code, one row per code, as in ThingsBoard (one alarm per originator and
type): raising an active alarm again only updates its severity and message, and keeps `raised_at_ms`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace
from typing import Literal

from edge.clock import Clock

__all__ = ["ALARMS_MAX", "Alarm", "AlarmRegistry", "Severity"]

log = logging.getLogger(__name__)

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor", "warning")
# Codes are stable slugs: the cloud keys its rows and exceptions by them.
CODE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
ALARMS_MAX = 64  # distinct codes; the cloud refuses a status with more
MESSAGE_LENGTH_MAX = 1024


@dataclass(frozen=True, slots=True)
class Alarm:
    code: str  # e.g. "outbox_full"
    severity: Severity
    message: str  # what is wrong and what it means, for a person
    raised_at_ms: int  # when it last became active (Unix ms, gateway clock)
    active: bool


class AlarmRegistry:
    """The current alarms of this gateway, by code; `changed` is set on every change of the set."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._alarms: dict[str, Alarm] = {}
        # The uplink waits on it (and clears it before reading the set) instead of polling.
        self.changed = asyncio.Event()

    def raise_alarm(self, code: str, severity: Severity, message: str, *, raised_at_ms: int | None = None) -> None:
        """Make `code` active (or update an active one's severity and message)."""
        assert CODE_PATTERN.fullmatch(code), f"alarm code {code!r} must match {CODE_PATTERN.pattern}"
        assert severity in SEVERITIES, severity
        message = message[:MESSAGE_LENGTH_MAX]
        current = self._alarms.get(code)
        if current is not None and current.active:
            updated = replace(current, severity=severity, message=message)
        else:
            assert current is not None or len(self._alarms) < ALARMS_MAX, "too many distinct alarm codes"
            updated = Alarm(code, severity, message, raised_at_ms or self._clock.unix_ms(), active=True)
            log.warning("alarm raised", extra={"alarm": code, "severity": severity, "alarm_message": message})
        if updated != current:
            self._alarms[code] = updated
            self.changed.set()

    def clear(self, code: str, message: str = "") -> None:
        """Make `code` inactive, if it is active; `message` says why, when given."""
        current = self._alarms.get(code)
        if current is None or not current.active:
            return
        self._alarms[code] = replace(current, active=False, message=(message or current.message)[:MESSAGE_LENGTH_MAX])
        log.info("alarm cleared", extra={"alarm": code})
        self.changed.set()

    def is_active(self, code: str) -> bool:
        alarm = self._alarms.get(code)
        return alarm is not None and alarm.active

    def snapshot(self) -> list[Alarm]:
        """Every alarm known since start, active or cleared, by code."""
        return [self._alarms[code] for code in sorted(self._alarms)]

    def active(self) -> list[Alarm]:
        return [alarm for alarm in self.snapshot() if alarm.active]
