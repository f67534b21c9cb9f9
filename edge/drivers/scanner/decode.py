"""Turn one scanner frame into a decoded GS1 scan or a reject that says why. Pure, and never raises.

Bytes are read as latin-1 (scanners send 8-bit data; nothing can fail to decode), line noise is dropped,
the configured prefix/suffix is stripped, and biip parses what is left: GS1 element strings (GS1-128,
GS1 DataMatrix, GS1 QR, DataBar), GS1 Digital Link URIs, and bare GTIN-8/12/13/14 from EAN/UPC/ITF-14
symbols. A scan is accepted when it identifies a GTIN (AI 01) or an SSCC (AI 00) with valid check digits.
Everything else becomes a ``ScanRejected`` with a human-readable reason and a stable ``reason_code``, so
the agent can quarantine it: bad input is kept, never silently lost.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from biip import ParseConfig, ParseError, ParseResult, parse
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString, GS1ElementStrings
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.symbology import GS1Symbology, SymbologyIdentifier
from biip.upc import Upc

from edge.drivers.scanner.framing import Frame
from edge.drivers.scanner.gs1 import digital_link_gtin_serial, digital_link_sscc

__all__ = [
    "DecodeOptions",
    "RejectCode",
    "ScanDecoded",
    "ScanRejected",
    "clean_text",
    "decode_frame",
    "decode_scan",
]

RejectCode = Literal["overflow", "empty", "not_gs1", "check_digit", "gs1_syntax", "bad_date"]

# C0 controls except GS (0x1D, the FNC1 field separator GS1 needs), DEL, and the C1 range, which has no
# printable character in latin-1: none of them can be barcode data, all of them arrive as line noise.
_LINE_NOISE = re.compile("[\x00-\x1c\x1e\x1f\x7f-\x9f]")
_VERIFY_DATES = ParseConfig(gs1_element_strings_verify_date=True)
_SKIP_DATE_CHECK = ParseConfig(gs1_element_strings_verify_date=False)
# biip tries a Digital Link only after ]Q3/]d2 or no AIM id, but a URI in a *plain* QR code or DataMatrix
# (how Digital Link is usually printed) arrives as ]Q1/]d1 (standards.md §2.5).
_DIGITAL_LINK_AIM_IDS = frozenset({"", "]Q1", "]d1", "]Q3", "]d2"})
# A URI with a GS1 primary key in its path was meant as a Digital Link: its failures are GS1 syntax errors.
_DIGITAL_LINK_KEY_PATH = re.compile(r"/(?:00|01)/\d")
_GTIN_LENGTHS = frozenset({8, 12, 13, 14})
_ITEM_KEY_AIS = frozenset({"00", "01"})


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """What decoding needs from the scanner config."""

    prefix: str = ""
    """Characters the scanner is configured to send before the data (stripped)."""
    suffix: str = ""
    """Characters the scanner is configured to send after the data (stripped)."""


@dataclass(frozen=True, slots=True)
class ScanDecoded:
    """A valid GS1 scan: what was seen, with the raw bytes kept for lineage."""

    raw: bytes
    text: str
    """The frame after noise, prefix/suffix and surrounding whitespace were removed (AIM id included)."""
    symbology: str
    """AIM symbology identifier such as ']C1', or '' when the scanner sends none."""
    gtin: str = ""
    """GTIN-14 of the trade item (AI 01 or a bare EAN/UPC), zero-padded."""
    content_gtin: str = ""
    """GTIN-14 of the trade items inside a logistic unit (AI 02), the item that ``count`` counts."""
    serial: str = ""
    sscc: str = ""
    batch: str = ""
    expiry_date: str = ""
    """AI 17 as YYYY-MM-DD; day 00 means the last day of the month."""
    best_before_date: str = ""
    """AI 15 as YYYY-MM-DD."""
    count: int | None = None
    """AI 37: number of trade items in a logistic unit."""
    net_weight_kg: Decimal | None = None
    """AI 310n."""
    object_id: str = ""
    """Canonical Digital Link id when the scan names one instance (SSCC, or GTIN + serial), else ''."""
    raw_sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw_sha256", hashlib.sha256(self.raw).hexdigest())


@dataclass(frozen=True, slots=True)
class ScanRejected:
    """A frame that is not a valid GS1 scan, kept with the reason for the quarantine."""

    raw: bytes
    reason: str
    """Human-readable: what is wrong and where."""
    reason_code: RejectCode
    raw_sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw_sha256", hashlib.sha256(self.raw).hexdigest())


@dataclass(frozen=True, slots=True)
class _Scan:
    """The cleaned frame being decoded, so helpers can build either outcome."""

    raw: bytes
    text: str
    symbology: str

    def reject(self, reason_code: RejectCode, reason: str) -> ScanRejected:
        return ScanRejected(raw=self.raw, reason=reason, reason_code=reason_code)

    def not_gs1(self) -> ScanRejected:
        return self.reject("not_gs1", f"not a GS1 barcode (no GTIN, SSCC or Digital Link): {self.text!r}")


def clean_text(frame: bytes, options: DecodeOptions) -> str:
    """Decode as latin-1, drop line noise, strip the configured prefix/suffix and surrounding whitespace.

    GS characters at either end are stripped with the whitespace: a leading one is the FNC1 that some
    scanners send when AIM ids are off, a trailing one separates nothing.
    """
    text = _LINE_NOISE.sub("", frame.decode("latin-1")).strip()
    prefix = _LINE_NOISE.sub("", options.prefix).strip()
    suffix = _LINE_NOISE.sub("", options.suffix).strip()
    if prefix and text.startswith(prefix):
        text = text[len(prefix) :]
    if suffix and text.endswith(suffix):
        text = text[: -len(suffix)]
    return text.strip()


def decode_frame(frame: Frame, options: DecodeOptions) -> ScanDecoded | ScanRejected:
    """Decode a frame from ``ScanFramer``; an overflowing (truncated) frame is always rejected."""
    if frame.overflow:
        return ScanRejected(
            raw=frame.data,
            reason_code="overflow",
            reason=(f"frame exceeds {len(frame.data)} bytes (truncated, {frame.discarded_bytes} bytes discarded)"),
        )
    return decode_scan(frame.data, options)


def decode_scan(frame: bytes, options: DecodeOptions) -> ScanDecoded | ScanRejected:
    """Decode the bytes of one frame (without terminator); never raises, whatever the bytes."""
    text = clean_text(frame, options)
    if not text:
        return ScanRejected(
            raw=frame, reason_code="empty", reason="frame holds no barcode data once line noise is removed"
        )
    result = _parse_guarded(text)
    if isinstance(result, str):
        return _Scan(frame, text, "").reject("not_gs1", f"barcode parser failed on {text!r}: {result}")
    identifier = result.symbology_identifier
    scan = _Scan(frame, text, identifier.value if identifier is not None else "")
    payload = text[len(scan.symbology) :]
    if payload[:4].lower() == "http" and scan.symbology in _DIGITAL_LINK_AIM_IDS:
        return _decode_digital_link(scan, payload)
    return _decode_parsed(scan, identifier, payload, result)


def _parse_guarded(text: str) -> ParseResult | str:
    """biip.parse, or the error it raised.

    biip answers "not this format" in the result, but hostile bytes still make it raise: ``"]"`` raises
    IndexError, ``"]W1"`` ParseError, ``"]Yx"`` ValueError. A scan must become a reject, never a crash.
    """
    try:
        return parse(text, config=_VERIFY_DATES)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _decode_digital_link(scan: _Scan, uri: str) -> ScanDecoded | ScanRejected:
    # Parsed directly rather than via biip.parse, which tries a Digital Link only for ]Q3/]d2 or a
    # lowercase "http" start; a QR code in alphanumeric mode carries the URI in capitals.
    try:
        link = GS1DigitalLinkURI.parse(uri, config=_VERIFY_DATES)
    except Exception as exc:
        if _digital_link_parses_without_date_check(uri):
            return scan.reject("bad_date", f"invalid date in Digital Link {scan.text!r}: {exc}")
        if _DIGITAL_LINK_KEY_PATH.search(uri):
            return scan.reject("gs1_syntax", f"GS1 Digital Link malformed in {scan.text!r}: {exc}")
        return scan.not_gs1()
    return _from_elements(scan, link.element_strings)


def _digital_link_parses_without_date_check(uri: str) -> bool:
    try:
        GS1DigitalLinkURI.parse(uri, config=_SKIP_DATE_CHECK)
    except Exception:
        return False
    return True


def _decode_parsed(
    scan: _Scan, identifier: SymbologyIdentifier | None, payload: str, result: ParseResult
) -> ScanDecoded | ScanRejected:
    gs1_symbology = identifier.gs1_symbology if identifier is not None else None
    # Without an AIM id nothing says what the symbol was, so every GS1 reading is tried.
    carries_gs1_data = identifier is None or gs1_symbology is not None
    if carries_gs1_data and result.gs1_message is not None and _has_item_key(result.gs1_message.element_strings):
        return _from_elements(scan, result.gs1_message.element_strings)
    if (identifier is None or gs1_symbology in GS1Symbology.with_gtin()) and _looks_like_gtin(payload):
        return _from_bare_gtin(scan, payload, gs1_symbology)
    if carries_gs1_data and _has_item_key(_elements_without_date_check(payload)):
        return scan.reject("bad_date", f"invalid date in {scan.text!r}: {result.gs1_message_error}")
    if gs1_symbology in GS1Symbology.with_gs1_messages():
        if result.gs1_message is not None:
            return scan.reject("not_gs1", f"GS1 data carries no GTIN (01) or SSCC (00): {scan.text!r}")
        return scan.reject("gs1_syntax", f"GS1 data malformed in {scan.text!r}: {result.gs1_message_error}")
    if gs1_symbology in GS1Symbology.with_gtin():
        return scan.reject("gs1_syntax", f"EAN/UPC data unreadable in {scan.text!r}: {result.gtin_error}")
    return scan.not_gs1()


def _elements_without_date_check(payload: str) -> GS1ElementStrings:
    """The element strings of ``payload`` when dates are not verified; empty when it still fails."""
    try:
        return GS1Message.parse(payload, config=_SKIP_DATE_CHECK).element_strings
    except Exception:
        return GS1ElementStrings()


def _looks_like_gtin(payload: str) -> bool:
    return payload.isascii() and payload.isdecimal() and len(payload) in _GTIN_LENGTHS


def _from_bare_gtin(scan: _Scan, digits: str, gs1_symbology: GS1Symbology | None) -> ScanDecoded | ScanRejected:
    """An EAN/UPC/ITF-14 scan: the whole payload is one GTIN."""
    try:
        # ]E0 covers EAN-13, UPC-A and UPC-E; 8 digits under ]E0 are a UPC-E (EAN-8 is ]E4), which biip
        # would check as a GTIN-8 and reject: expand it to its UPC-A first.
        if gs1_symbology is GS1Symbology.EAN_13 and len(digits) == 8:
            gtin = Gtin.parse(Upc.parse(digits).as_upc_a())
        else:
            gtin = Gtin.parse(digits)
    except ParseError as exc:
        # Length and digits were checked above, so a wrong check digit is what remains, except for a
        # UPC-E whose number system is neither 0 nor 1.
        upc_e_number_system_bad = len(digits) == 8 and gs1_symbology is GS1Symbology.EAN_13 and digits[0] not in "01"
        code: RejectCode = "gs1_syntax" if upc_e_number_system_bad else "check_digit"
        return scan.reject(code, f"GTIN check digit invalid in {digits!r}: {exc}")
    return ScanDecoded(raw=scan.raw, text=scan.text, symbology=scan.symbology, gtin=gtin.as_gtin_14())


def _has_item_key(elements: GS1ElementStrings) -> bool:
    return any(element.ai.ai in _ITEM_KEY_AIS for element in elements)


def _element(elements: GS1ElementStrings, ai: str) -> GS1ElementString | None:
    # GS1ElementStrings.get() matches AIs by prefix; these lookups need the exact AI.
    return next((element for element in elements if element.ai.ai == ai), None)


def _from_elements(scan: _Scan, elements: GS1ElementStrings) -> ScanDecoded | ScanRejected:
    if not _has_item_key(elements):
        return scan.reject("not_gs1", f"GS1 data carries no GTIN (01) or SSCC (00): {scan.text!r}")
    rejected = _check_elements(scan, elements)
    if rejected is not None:
        return rejected
    return _decoded(scan, elements)


def _check_elements(scan: _Scan, elements: GS1ElementStrings) -> ScanRejected | None:
    for element in elements:
        for title, error in (
            ("GTIN", element.gtin_error),
            ("SSCC", element.sscc_error),
            ("GLN", element.gln_error),
        ):
            if error:
                return scan.reject("check_digit", f"{title} check digit invalid in {element.value!r}: {error}")
    seen: dict[str, str] = {}
    for element in elements:
        first = seen.setdefault(element.ai.ai, element.value)
        if first != element.value:
            return scan.reject(
                "gs1_syntax",
                f"AI ({element.ai.ai}) appears twice with different values "
                f"({first!r}, {element.value!r}) in {scan.text!r}",
            )
    return None


def _decoded(scan: _Scan, elements: GS1ElementStrings) -> ScanDecoded:
    def value(ai: str) -> str:
        element = _element(elements, ai)
        return element.value if element is not None else ""

    def date(ai: str) -> str:
        element = _element(elements, ai)
        return element.date.isoformat() if element is not None and element.date is not None else ""

    gtin, serial, sscc = value("01"), value("21"), value("00")
    count = value("37")
    weight = next((element.decimal for element in elements if element.ai.ai.startswith("310")), None)
    return ScanDecoded(
        raw=scan.raw,
        text=scan.text,
        symbology=scan.symbology,
        gtin=gtin,
        content_gtin=value("02"),
        serial=serial,
        sscc=sscc,
        batch=value("10"),
        expiry_date=date("17"),
        best_before_date=date("15"),
        count=int(count) if count else None,
        net_weight_kg=weight,
        object_id=_object_id(gtin, serial, sscc),
    )


def _object_id(gtin: str, serial: str, sscc: str) -> str:
    """The instance the scan names; an SSCC wins over GTIN + serial, as AI 00 is the key of its label."""
    if sscc:
        return digital_link_sscc(sscc)
    if gtin and serial:
        return digital_link_gtin_serial(gtin, serial)
    return ""
