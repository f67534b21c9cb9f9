"""GS1 helpers the scanner driver needs beyond biip: the mod-10 check digit and canonical Digital Link ids.

The canonical id is how a scanned instance (a serialised trade item or a logistic unit) is named in events:
domain ``id.gs1.org`` and no query string, so the same item scanned from a GS1-128 label, a GS1 DataMatrix or
a Digital Link QR code gets the same id (the EPCIS event-hash rule, standards.md §2.4).
"""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["digital_link_gtin_serial", "digital_link_sscc", "gs1_check_digit"]

_DIGITAL_LINK_BASE = "https://id.gs1.org"


def gs1_check_digit(body: str) -> int:
    """Return the GS1 mod-10 check digit for ``body`` (a GTIN, GLN or SSCC without its check digit).

    Weights 3, 1, 3, 1 … are applied from the rightmost digit leftwards.
    """
    if not body.isascii() or not body.isdecimal():
        raise ValueError(f"GS1 check digit needs decimal digits, got {body!r}")
    total = sum(int(digit) * (3 if index % 2 == 0 else 1) for index, digit in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def _require_key(value: str, length: int, title: str) -> None:
    if len(value) != length or not value.isascii() or not value.isdecimal():
        raise ValueError(f"{title} must be {length} digits, got {value!r}")
    if gs1_check_digit(value[:-1]) != int(value[-1]):
        raise ValueError(f"{title} check digit invalid in {value!r}")


def digital_link_gtin_serial(gtin14: str, serial: str) -> str:
    """Canonical id of one serialised trade item: ``https://id.gs1.org/01/{gtin14}/21/{serial}``.

    The serial is percent-encoded per RFC 3986: every character outside the unreserved set
    (``A-Z a-z 0-9 - . _ ~``) is encoded, as GS1 Digital Link requires for AI 21 values.
    """
    _require_key(gtin14, 14, "GTIN-14")
    if not serial:
        raise ValueError("serial must not be empty")
    return f"{_DIGITAL_LINK_BASE}/01/{gtin14}/21/{quote(serial, safe='')}"


def digital_link_sscc(sscc18: str) -> str:
    """Canonical id of one logistic unit: ``https://id.gs1.org/00/{sscc18}``."""
    _require_key(sscc18, 18, "SSCC")
    return f"{_DIGITAL_LINK_BASE}/00/{sscc18}"
