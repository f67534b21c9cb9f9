"""The gateway's alarm registry: conditions an operator must act on, raised and cleared by the agent's parts.

The outbox raises `outbox_near_cap`, `outbox_shedding` and `outbox_full` around its disk cap and
`outbox_salvaged` when it had to salvage a damaged file at start; other parts (the clock, for skew)
may raise their own. The uplink sends the whole set to the cloud in a `GatewayStatus` after each
Hello and whenever it changes, so the cloud always holds the gateway's latest view: an alarm cleared
here is sent once more with `active = false`, and one the gateway no longer reports at all (after a
restart) is cleared by the cloud.

An alarm is identified by its code, one row per code, as in ThingsBoard (one alarm per originator and
type): raising an active alarm again only updates its severity and message, and keeps `raised_at_ms`.

Most alarms are standing conditions that their owner clears when the condition ends. An alarm that
reports something that happened (`outbox_salvaged`) has no such end, so it expires on its own
`EXPIRING_ALARMS_MS[code]` after `raised_at_ms`: a timer on the running loop clears it then (so the
uplink sends the change), and reading the set also clears what is due by the registry's clock.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, replace
from typing import Literal

from edge.clock import Clock

__all__ = ["ALARMS_MAX", "EXPIRING_ALARMS_MS", "Alarm", "AlarmRegistry", "Severity"]

log = logging.getLogger(__name__)

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor", "warning")
# Codes are stable slugs: the cloud keys its rows and exceptions by them.
CODE_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
ALARMS_MAX = 64  # distinct codes; the cloud refuses a status with more
MESSAGE_LENGTH_MAX = 1024
# The cloud refuses a status whose message holds one (and would refuse every status after it): a message
# built from a library's text (SQLite's quick_check answers in lines) has them replaced by spaces here.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# Alarms that expire this long after they were raised. `outbox_salvaged`: long enough for a person to see
# it; the outbox does not raise it again at a restart after this (its SALVAGE_ALARM_ACTIVE_MS).
EXPIRING_ALARMS_MS: dict[str, int] = {"outbox_salvaged": 24 * 3_600_000}


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
        self._expires_at_ms: dict[str, int] = {}  # active expiring alarms: when they end (registry clock)
        self._expiry_timer: asyncio.TimerHandle | None = None
        # The uplink waits on it (and clears it before reading the set) instead of polling.
        self.changed = asyncio.Event()

    def raise_alarm(self, code: str, severity: Severity, message: str, *, raised_at_ms: int | None = None) -> None:
        """Make `code` active (or update an active one's severity and message)."""
        assert CODE_PATTERN.fullmatch(code), f"alarm code {code!r} must match {CODE_PATTERN.pattern}"
        assert severity in SEVERITIES, severity
        message = _sendable(message)
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
        lifetime_ms = EXPIRING_ALARMS_MS.get(code)
        if lifetime_ms is not None:
            self._expires_at_ms[code] = updated.raised_at_ms + lifetime_ms
            self.expire_due()

    def clear(self, code: str, message: str = "") -> None:
        """Make `code` inactive, if it is active; `message` says why, when given."""
        current = self._alarms.get(code)
        if current is None or not current.active:
            return
        self._expires_at_ms.pop(code, None)
        self._alarms[code] = replace(current, active=False, message=_sendable(message or current.message))
        log.info("alarm cleared", extra={"alarm": code})
        self.changed.set()

    def expire_due(self) -> None:
        """Clear the expiring alarms whose time is up, and set the timer for the next one."""
        now_ms = self._clock.unix_ms()
        for code, expires_at_ms in sorted(self._expires_at_ms.items()):
            if expires_at_ms <= now_ms:
                lifetime_h = EXPIRING_ALARMS_MS[code] / 3_600_000
                self.clear(code, f"{self._alarms[code].message} (expired {lifetime_h:g} h after it was raised)")
        self._set_expiry_timer(now_ms)

    def _set_expiry_timer(self, now_ms: int) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        if not self._expires_at_ms:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): expiry happens when the set is next read
        # The timer runs on the loop's monotonic clock; expire_due checks the registry's clock again (it
        # may have been stepped) and sets the next timer, so a step makes it late or early, never lost.
        delay_s = (min(self._expires_at_ms.values()) - now_ms) / 1000
        self._expiry_timer = loop.call_later(max(delay_s, 0.0), self.expire_due)

    def is_active(self, code: str) -> bool:
        self._expire_if_due()
        alarm = self._alarms.get(code)
        return alarm is not None and alarm.active

    def snapshot(self) -> list[Alarm]:
        """Every alarm known since start, active or cleared, by code."""
        self._expire_if_due()
        return [self._alarms[code] for code in sorted(self._alarms)]

    def _expire_if_due(self) -> None:
        if self._expires_at_ms and min(self._expires_at_ms.values()) <= self._clock.unix_ms():
            self.expire_due()

    def active(self) -> list[Alarm]:
        return [alarm for alarm in self.snapshot() if alarm.active]


def _sendable(message: str) -> str:
    """`message` as the cloud takes it: no control characters, at most `MESSAGE_LENGTH_MAX` characters."""
    return CONTROL_CHARACTERS.sub(" ", message)[:MESSAGE_LENGTH_MAX]
