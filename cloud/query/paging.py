"""Page sizes and opaque page tokens for the list RPCs.

A token is URL-safe base64 (unpadded) of a small JSON object holding the kind of list and
the key of the last row returned; anything that does not decode to the right kind is
"page_token is malformed". Clients must treat tokens as opaque.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cloud.errors import ValidationError

__all__ = [
    "PAGE_SIZE_DEFAULT",
    "PAGE_SIZE_MAX",
    "decode_event_token",
    "decode_quarantine_token",
    "encode_event_token",
    "encode_quarantine_token",
    "page_size",
]

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
PAGE_TOKEN_LENGTH_MAX = 1024
MALFORMED = "page_token is malformed"


def page_size(requested: int) -> int:
    """The page size to use: the default for 0; INVALID_ARGUMENT above the maximum."""
    if requested == 0:
        return PAGE_SIZE_DEFAULT
    if requested > PAGE_SIZE_MAX:
        raise ValidationError(f"page_size {requested} is above the maximum {PAGE_SIZE_MAX}")
    return requested


def encode_event_token(event_time_us: int, event_id: str) -> str:
    """The token that continues after the event (event_time_us, event_id)."""
    return _encode({"kind": "events", "time_us": event_time_us, "event_id": event_id})


def decode_event_token(token: str) -> tuple[int, str]:
    """(event_time_us, event_id) of the last event already returned."""
    body = _decode(token, "events")
    time_us, event_id = body.get("time_us"), body.get("event_id")
    if type(time_us) is not int or not isinstance(event_id, str) or abs(time_us) >= 2**63:
        raise ValidationError(MALFORMED)
    return time_us, event_id


def encode_quarantine_token(quarantine_id: int) -> str:
    """The token that continues after the quarantine row `quarantine_id`."""
    return _encode({"kind": "quarantine", "id": quarantine_id})


def decode_quarantine_token(token: str) -> int:
    """The quarantine_id of the last row already returned."""
    quarantine_id = _decode(token, "quarantine").get("id")
    if type(quarantine_id) is not int or not 0 < quarantine_id < 2**63:
        raise ValidationError(MALFORMED)
    return quarantine_id


def _encode(body: dict[str, Any]) -> str:
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode(token: str, kind: str) -> dict[str, Any]:
    if len(token) > PAGE_TOKEN_LENGTH_MAX:
        raise ValidationError(MALFORMED)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError) as exc:  # ValueError covers JSON and UTF-8 errors
        raise ValidationError(MALFORMED) from exc
    if not isinstance(body, dict) or body.get("kind") != kind:
        raise ValidationError(MALFORMED)
    return body
