"""The page token of ListDrifts: opaque to clients, the key of the last drift returned.

URL-safe base64 (unpadded) of a small JSON object, as the inventory list tokens
(`cloud.query.paging`); anything that does not decode to a drift key is "page_token is malformed".
"""

from __future__ import annotations

import base64
import binascii
import json

from cloud.errors import ValidationError

__all__ = ["decode_drift_token", "encode_drift_token"]

PAGE_TOKEN_LENGTH_MAX = 1024
MALFORMED = "page_token is malformed"
_KIND = "drifts"


def encode_drift_token(recorded_at_us: int, run_id: str, row_no: int) -> str:
    """The token that continues after the drift (recorded_at_us, run_id, row_no)."""
    body = {"kind": _KIND, "at": recorded_at_us, "run": run_id, "row": row_no}
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_drift_token(token: str) -> tuple[int, str, int]:
    """(recorded_at_us, run_id, row_no) of the last drift already returned."""
    if len(token) > PAGE_TOKEN_LENGTH_MAX:
        raise ValidationError(MALFORMED)
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError) as exc:  # ValueError covers JSON and UTF-8 errors
        raise ValidationError(MALFORMED) from exc
    if not isinstance(body, dict) or body.get("kind") != _KIND:
        raise ValidationError(MALFORMED)
    at, run, row = body.get("at"), body.get("run"), body.get("row")
    if type(at) is not int or not isinstance(run, str) or type(row) is not int:
        raise ValidationError(MALFORMED)
    if not (0 <= at < 2**63 and 0 < row < 2**63):
        raise ValidationError(MALFORMED)
    return at, run, row
