"""Pure helpers shared by the JSON device codecs (Zebra, Impinj, MQTT climate sensors).

A codec turns one payload into items and rejects and never raises: a bad field becomes a reject string that
says what was wrong and where (``item 3: data.idHex 'ZZ' is not hex``) and goes to the quarantine with the
raw payload. The helpers here raise ``FieldError`` for one bad field; each codec catches it per item.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

__all__ = [
    "DEVICE_TIME_MAX",
    "DEVICE_TIME_MIN",
    "ITEMS_PER_PAYLOAD_MAX",
    "PAYLOAD_BYTES_MAX",
    "Decoded",
    "FieldError",
    "JsonItems",
    "base64_to_hex",
    "get_path",
    "hex_id",
    "load_json_items",
    "optional_number",
    "payload_sha256",
    "require_int",
    "require_number",
    "require_object",
    "require_text",
    "show",
    "timestamp_or",
    "unix_timestamp",
]

ItemT = TypeVar("ItemT")

# A reader batching a busy portal sends a few hundred tag records per payload; these caps stop a hostile or
# broken payload from turning into millions of objects. Items past the cap are rejected, not dropped.
PAYLOAD_BYTES_MAX = 262_144
ITEMS_PER_PAYLOAD_MAX = 5000
# An EPC bank is at most 496 bits (Gen2 with XPC); 512 bits of hex leaves room and still bounds the string.
ID_HEX_CHARS_MAX = 128
TIMESTAMP_CHARS_MAX = 64
# A device time outside this window is a broken clock, not an observation; near datetime's own limits (years 1 and
# 9999) the pipeline's conversions to UTC and to the site's zone would overflow.
DEVICE_TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
DEVICE_TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)
# Values quoted in reject reasons are cut to this many characters so that a reject stays one short line.
SHOWN_CHARS_MAX = 40
_MISSING = object()


class FieldError(ValueError):
    """One field of one item is missing or malformed; the message says which and why."""


@dataclass(frozen=True)
class Decoded(Generic[ItemT]):
    """What a codec made of one payload.

    ``items`` are the good observations; ``rejects`` say what was wrong and where, one line each (the whole
    payload is quarantined with them); ``ignored`` counts well-formed items of kinds this driver does not
    use (reader status, heartbeats), by kind.
    """

    items: tuple[ItemT, ...] = ()
    rejects: tuple[str, ...] = ()
    ignored: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class JsonItems:
    """A payload split into its top-level elements, each ``(index, object)`` or ``(index, why it is not one)``;
    ``rejects`` are about the payload as a whole (not JSON, too big, items past the cap)."""

    elements: tuple[tuple[int, dict[str, object] | str], ...]
    rejects: tuple[str, ...]


def payload_sha256(payload: bytes) -> str:
    """Digest of the raw payload, carried by every item made from it (lineage)."""
    return hashlib.sha256(payload).hexdigest()


def load_json_items(
    payload: bytes, *, payload_bytes_max: int = PAYLOAD_BYTES_MAX, items_max: int = ITEMS_PER_PAYLOAD_MAX
) -> JsonItems:
    """Parse a payload that is one JSON object or an array of them (readers batch reports into arrays)."""
    if len(payload) > payload_bytes_max:
        return JsonItems((), (f"payload: {len(payload)} bytes, over the {payload_bytes_max}-byte cap",))
    if not payload.strip():
        return JsonItems((), ("payload: empty",))
    try:
        document = json.loads(payload)
    except RecursionError:
        return JsonItems((), ("payload: JSON nested too deeply",))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return JsonItems((), (f"payload: not JSON: {_short(str(exc), 80)}",))
    if not isinstance(document, (list, dict)):
        return JsonItems((), (f"payload: expected a JSON object or array, got {_kind(document)}",))
    if document == []:
        # An empty batch reports nothing; it is kept (with this reason) rather than vanishing unaccounted.
        return JsonItems((), ("payload: an empty JSON array, no events in it",))
    elements: list[object] = document if isinstance(document, list) else [document]
    kept: list[tuple[int, dict[str, object] | str]] = []
    for index, element in enumerate(elements[:items_max]):
        kept.append((index, element if isinstance(element, dict) else f"expected a JSON object, got {_kind(element)}"))
    rejects: tuple[str, ...] = ()
    if len(elements) > items_max:
        rejects = (f"items {items_max}..{len(elements) - 1}: over the {items_max}-item cap",)
    return JsonItems(tuple(kept), rejects)


def get_path(obj: Mapping[str, object], path: str) -> object:
    """The value at a dotted path (``env.rh``), or raise ``FieldError`` naming the missing part."""
    value: object = obj
    walked: list[str] = []
    for key in path.split("."):
        walked.append(key)
        if not isinstance(value, Mapping):
            raise FieldError(f"{'.'.join(walked[:-1])} is {_kind(value)}, not an object")
        value = value.get(key, _MISSING)
        if value is _MISSING:
            raise FieldError(f"no {'.'.join(walked)}")
    return value


def require_object(value: object, where: str) -> Mapping[str, object]:
    _require_present(value, where)
    if not isinstance(value, dict):
        raise FieldError(f"{where} is {_kind(value)}, not an object")
    return value


def require_text(value: object, where: str) -> str:
    _require_present(value, where)
    if not isinstance(value, str):
        raise FieldError(f"{where} is {_kind(value)}, not a string")
    return value


def require_int(value: object, where: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A JSON integer (``2`` or ``2.0``, never ``true`` or ``"2"``) within the bounds."""
    _require_present(value, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(f"{where} {show(value)} is not an integer")
    if isinstance(value, float) and not value.is_integer():  # also rejects NaN and infinities
        raise FieldError(f"{where} {show(value)} is not an integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise FieldError(f"{where} {number} is below {minimum}")
    if maximum is not None and number > maximum:
        raise FieldError(f"{where} {number} is above {maximum}")
    return number


def require_number(value: object, where: str) -> float:
    """A finite JSON number. Python's json module accepts ``NaN`` and ``Infinity``; they are rejected here."""
    _require_present(value, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(f"{where} {show(value)} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise FieldError(f"{where} {show(value)} is not a finite number")
    return number


def optional_number(obj: Mapping[str, object], key: str, where: str) -> float | None:
    value = obj.get(key)
    return None if value is None else require_number(value, where)


def hex_id(value: object, where: str) -> str:
    """A tag id in hex (EPC bank), upper-cased; an even number of hex digits, at most 512 bits."""
    text = require_text(value, where)
    if not text:
        raise FieldError(f"{where} is empty")
    if len(text) > ID_HEX_CHARS_MAX:
        raise FieldError(f"{where} has {len(text)} characters, over {ID_HEX_CHARS_MAX}")
    if any(character not in "0123456789abcdefABCDEF" for character in text):
        raise FieldError(f"{where} {show(text)} is not hex")
    if len(text) % 2:
        raise FieldError(f"{where} {show(text)} has an odd number of hex digits")
    return text.upper()


def base64_to_hex(value: object, where: str) -> str:
    """A tag id sent as base64 (Impinj's ``epc``), as upper-case hex. Missing ``=`` padding is tolerated."""
    text = require_text(value, where)
    if not text:
        raise FieldError(f"{where} is empty")
    if len(text) > ID_HEX_CHARS_MAX:
        raise FieldError(f"{where} has {len(text)} characters, over {ID_HEX_CHARS_MAX}")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FieldError(f"{where} {show(text)} is not base64") from None
    if not raw:
        raise FieldError(f"{where} {show(text)} decodes to no bytes")
    return raw.hex().upper()


def timestamp_or(value: object, where: str, default: datetime) -> datetime:
    """An ISO-8601 timestamp with a zone offset (``Z``, ``+00:00`` or Zebra's ``+0000``); ``default`` if absent.

    A timestamp without an offset is rejected rather than guessed: a gateway's zone and a reader's zone
    differ more often than anyone expects, and events carry their offset. So is one outside
    ``DEVICE_TIME_MIN``..``DEVICE_TIME_MAX`` (a broken device clock).
    """
    if value is None:
        return default
    text = require_text(value, where)
    if len(text) > TIMESTAMP_CHARS_MAX:
        raise FieldError(f"{where} has {len(text)} characters, over {TIMESTAMP_CHARS_MAX}")
    try:
        # Python 3.11's fromisoformat reads "+0000", "Z", "+00:00" and any number of fraction digits.
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise FieldError(f"{where} {show(text)} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise FieldError(f"{where} {show(text)} has no zone offset")
    return _plausible(parsed, where, text)


def unix_timestamp(value: object, where: str, *, unit_per_second: int) -> datetime:
    """Seconds (``unit_per_second=1``) or milliseconds (``1000``) since the Unix epoch, as an aware UTC time
    within ``DEVICE_TIME_MIN``..``DEVICE_TIME_MAX``."""
    number = require_number(value, where)
    try:
        moment = datetime.fromtimestamp(number / unit_per_second, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise FieldError(f"{where} {show(value)} is out of range for a time") from None
    return _plausible(moment, where, value)


def _plausible(moment: datetime, where: str, value: object) -> datetime:
    """``moment`` if it lies in the device time window; ``FieldError`` otherwise (also when UTC cannot hold it)."""
    try:
        in_window = DEVICE_TIME_MIN <= moment.astimezone(UTC) < DEVICE_TIME_MAX
    except OverflowError:  # "9999-12-31T23:59:59-23:59" is past year 9999 in UTC
        in_window = False
    if not in_window:
        raise FieldError(
            f"{where} {show(value)} is outside {DEVICE_TIME_MIN:%Y-%m-%d}..{DEVICE_TIME_MAX:%Y-%m-%d} UTC "
            "(the device clock is wrong)"
        )
    return moment


def show(value: object) -> str:
    """A value as quoted in a reject reason: ``'ZZ'``, ``12``, ``null``, cut to a short length."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(_short(value, SHOWN_CHARS_MAX))
    if isinstance(value, (int, float)):
        return _short(repr(value), SHOWN_CHARS_MAX)
    return _kind(value)


def _require_present(value: object, where: str) -> None:
    # An absent key and an explicit null mean the same to every device format here: the field is not there.
    if value is None:
        raise FieldError(f"no {where}")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
