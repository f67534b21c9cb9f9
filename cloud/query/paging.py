"""Page sizes and opaque page tokens for the list RPCs.

A token is URL-safe base64 (unpadded) of a small JSON object holding the kind of list and
the key of the last row returned; anything that does not decode to the right kind is
"page_token is malformed". Clients must treat tokens as opaque.

ListEvents and ListQuarantine page 100 rows by default, at most 1000. ListOnHand pages
50,000 by default and at most: the rows are small, and 50,000 is what it answered in one
piece before it had paging, so a client that never sets page_size sees no change.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, TypeGuard

from cloud.errors import ValidationError

__all__ = [
    "ON_HAND_PAGE_SIZE_DEFAULT",
    "ON_HAND_PAGE_SIZE_MAX",
    "PAGE_SIZE_DEFAULT",
    "PAGE_SIZE_MAX",
    "decode_event_token",
    "decode_on_hand_token",
    "decode_quarantine_token",
    "encode_event_token",
    "encode_on_hand_token",
    "encode_quarantine_token",
    "page_size",
]

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
ON_HAND_PAGE_SIZE_MAX = 50_000
ON_HAND_PAGE_SIZE_DEFAULT = ON_HAND_PAGE_SIZE_MAX
PAGE_TOKEN_LENGTH_MAX = 1024
# An on-hand token carries a biz_location, which ingest bounds only by its message size (4 MiB by
# default): allow any such key, base64 and JSON escaping included. gRPC's own request size
# limit on the query server still bounds what arrives.
ON_HAND_PAGE_TOKEN_LENGTH_MAX = 12 * 1024 * 1024
MALFORMED = "page_token is malformed"

assert ON_HAND_PAGE_SIZE_DEFAULT <= ON_HAND_PAGE_SIZE_MAX and PAGE_SIZE_DEFAULT <= PAGE_SIZE_MAX


def page_size(requested: int, default: int = PAGE_SIZE_DEFAULT, maximum: int = PAGE_SIZE_MAX) -> int:
    """The page size to use: `default` for 0; INVALID_ARGUMENT above `maximum`."""
    if requested == 0:
        return default
    if requested > maximum:
        raise ValidationError(f"page_size {requested} is above the maximum {maximum}")
    return requested


def encode_event_token(event_time_us: int, event_id: str) -> str:
    """The token that continues after the event (event_time_us, event_id)."""
    return _encode({"kind": "events", "time_us": event_time_us, "event_id": event_id})


def decode_event_token(token: str) -> tuple[int, str]:
    """(event_time_us, event_id) of the last event already returned."""
    body = _decode(token, "events")
    time_us, event_id = body.get("time_us"), body.get("event_id")
    if type(time_us) is not int or not _is_text(event_id) or abs(time_us) >= 2**63:
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


def encode_on_hand_token(gtin: str, biz_location: str) -> str:
    """The token that continues after the on-hand row (gtin, biz_location)."""
    return _encode({"kind": "on_hand", "gtin": gtin, "biz_location": biz_location})


def decode_on_hand_token(token: str) -> tuple[str, str]:
    """(gtin, biz_location) of the last on-hand row already returned."""
    body = _decode(token, "on_hand", ON_HAND_PAGE_TOKEN_LENGTH_MAX)
    gtin, biz_location = body.get("gtin"), body.get("biz_location")
    if not _is_text(gtin) or not _is_text(biz_location):
        raise ValidationError(MALFORMED)
    return gtin, biz_location


def _is_text(value: object) -> TypeGuard[str]:
    """A str the stores can take: JSON may decode a lone surrogate ("\\ud800"), which no UTF-8 encoder accepts."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encode(body: dict[str, Any]) -> str:
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode(token: str, kind: str, length_max: int = PAGE_TOKEN_LENGTH_MAX) -> dict[str, Any]:
    if len(token) > length_max:
        raise ValidationError(MALFORMED)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
    except (binascii.Error, ValueError) as exc:  # ValueError covers JSON and UTF-8 errors
        raise ValidationError(MALFORMED) from exc
    if not isinstance(body, dict) or body.get("kind") != kind:
        raise ValidationError(MALFORMED)
    return body
