"""EPC URIs and GS1 Digital Link URIs → the constrained canonical GS1 Digital Link URI.

The EPCIS event hash (CBV 2.0, rules 17 and 18) compares identifiers in one form: a GS1 Digital
Link URI on `https://id.gs1.org`, no query string, and only the finest level of identification
(a serial wins over a lot). This module turns the identifier forms an EPCIS event may carry into it:

    urn:epc:id:sgtin:0614141.812345.6789     → https://id.gs1.org/01/80614141123458/21/6789
    urn:epc:id:sscc:0614141.1234567890       → https://id.gs1.org/00/106141412345678908
    urn:epc:id:sgln:0614141.12345.400        → https://id.gs1.org/414/0614141123452/254/400 (ext "0" dropped)
    urn:epc:id:grai:0614141.12345.400        → https://id.gs1.org/8003/00614141123452400
    urn:epc:id:giai:0614141.12345400         → https://id.gs1.org/8004/061414112345400
    urn:epc:id:gdti, urn:epc:id:pgln, urn:epc:class:lgtin, urn:epc:idpat:sgtin (…/*)
    https://example.com/x/01/9501101530003/10/L1/21/S?17=… → https://id.gs1.org/01/09501101530003/21/S

Anything else (`urn:uuid:…`, a private URN, a plain string) is not a GS1 identifier: `canonical_digital_link`
answers None and the hash keeps the value as it is. The cloud never imports the edge's EPC decoder
(they meet only in protos), so the small conversion lives here.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from cloud.ingest.validation import gs1_check_digit

__all__ = ["CANONICAL_ORIGIN", "canonical_digital_link"]

CANONICAL_ORIGIN = "https://id.gs1.org"

# EPC URI bodies (TDS 2.x §6): company prefix 6-12 digits; the second field's width follows from it.
_EPC_URI = re.compile(r"urn:epc:(id|class|idpat):([a-z0-9]+):(.+)")
_DIGITS = re.compile(r"[0-9]+")
# GS1 Digital Link: characters a key qualifier value may hold (GS1 AI encodable set 82, percent-encoded).
_DL_VALUE = re.compile(r"[!%'()*+,\-./0-9:;<=>?A-Z_a-z\"&]{1,90}")
# Primary keys and the qualifiers the constrained form keeps, finest first (rule 18 III).
_QUALIFIERS: dict[str, tuple[str, ...]] = {
    "00": (),
    "01": ("21", "10", "235"),
    "253": (),
    "255": (),
    "401": (),
    "402": (),
    "414": ("254",),
    "417": (),
    "8003": (),
    "8004": (),
    "8006": ("21", "10"),
    "8010": ("8011",),
    "8017": (),
    "8018": (),
}
# Fixed-length numeric keys (GTIN padded separately, it has shorter legacy forms).
_KEY_LENGTHS = {"00": 18, "414": 13, "417": 13, "402": 17, "8017": 18, "8018": 18, "8006": 18}
# Characters GS1 Digital Link wants percent-encoded that an EPC URI may carry literally.
_DL_ESCAPES = str.maketrans({"!": "%21", "(": "%28", ")": "%29", "*": "%2A", "+": "%2B", ",": "%2C", ":": "%3A"})


def canonical_digital_link(uri: str) -> str | None:
    """The constrained canonical GS1 Digital Link URI of `uri`, or None if it names no GS1 key we know."""
    uri = uri.strip()
    if uri.startswith("urn:epc:"):
        return _from_epc_uri(uri)
    if uri.startswith(("https://", "http://")):
        return _from_digital_link(uri)
    return None


def _with_check_digit(digits: str) -> str:
    return digits + str(gs1_check_digit(digits))


def _split_fields(body: str, count: int) -> list[str] | None:
    fields = body.split(".")
    return fields if len(fields) == count else None


def _company_fields(prefix: str, reference: str, total: int) -> bool:
    """Whether `prefix` (6-12 digits) and `reference` are digits that together make `total` digits."""
    return (
        6 <= len(prefix) <= 12
        and bool(_DIGITS.fullmatch(prefix))
        and (reference == "" or bool(_DIGITS.fullmatch(reference)))
        and len(prefix) + len(reference) == total
    )


def _from_epc_uri(uri: str) -> str | None:
    match = _EPC_URI.fullmatch(uri)
    if match is None:
        return None
    form, scheme, body = match.groups()
    converter = _EPC_CONVERTERS.get((form, scheme))
    return None if converter is None else converter(body)


def _sgtin(body: str) -> str | None:
    fields = _split_fields(body, 3)
    if fields is None or not fields[2] or not _company_fields(fields[0], fields[1], 13):
        return None
    prefix, item_reference, serial = fields
    gtin = _with_check_digit(item_reference[0] + prefix + item_reference[1:])
    return f"{CANONICAL_ORIGIN}/01/{gtin}/21/{serial.translate(_DL_ESCAPES)}"


def _sgtin_pattern(body: str) -> str | None:
    fields = _split_fields(body, 3)
    if fields is None or fields[2] != "*" or not _company_fields(fields[0], fields[1], 13):
        return None
    gtin = _with_check_digit(fields[1][0] + fields[0] + fields[1][1:])
    return f"{CANONICAL_ORIGIN}/01/{gtin}"


def _lgtin(body: str) -> str | None:
    fields = _split_fields(body, 3)
    if fields is None or not fields[2] or not _company_fields(fields[0], fields[1], 13):
        return None
    gtin = _with_check_digit(fields[1][0] + fields[0] + fields[1][1:])
    return f"{CANONICAL_ORIGIN}/01/{gtin}/10/{fields[2].translate(_DL_ESCAPES)}"


def _sscc(body: str) -> str | None:
    fields = _split_fields(body, 2)
    if fields is None or not _company_fields(fields[0], fields[1], 17):
        return None
    prefix, serial_reference = fields
    return f"{CANONICAL_ORIGIN}/00/{_with_check_digit(serial_reference[0] + prefix + serial_reference[1:])}"


def _sgln(body: str) -> str | None:
    fields = _split_fields(body, 3)
    if fields is None or not fields[2] or not _company_fields(fields[0], fields[1], 12):
        return None
    gln = _with_check_digit(fields[0] + fields[1])
    extension = fields[2]
    if extension == "0":  # TDS: extension "0" means "no extension"
        return f"{CANONICAL_ORIGIN}/414/{gln}"
    return f"{CANONICAL_ORIGIN}/414/{gln}/254/{extension.translate(_DL_ESCAPES)}"


def _grai(body: str) -> str | None:
    fields = _split_fields(body, 3)
    if fields is None or not fields[2] or not _company_fields(fields[0], fields[1], 12):
        return None
    grai = _with_check_digit("0" + fields[0] + fields[1])  # AI 8003: a leading 0, then the 13-digit key
    return f"{CANONICAL_ORIGIN}/8003/{grai}{fields[2].translate(_DL_ESCAPES)}"


def _giai(body: str) -> str | None:
    fields = _split_fields(body, 2)
    if fields is None or not fields[1] or not _company_fields(fields[0], "", len(fields[0])):
        return None
    return f"{CANONICAL_ORIGIN}/8004/{fields[0]}{fields[1].translate(_DL_ESCAPES)}"


def _gdti(body: str) -> str | None:
    fields = _split_fields(body, 3)
    if fields is None or not _company_fields(fields[0], fields[1], 12):
        return None
    gdti = _with_check_digit(fields[0] + fields[1])
    return f"{CANONICAL_ORIGIN}/253/{gdti}{fields[2].translate(_DL_ESCAPES)}"


def _pgln(body: str) -> str | None:
    fields = _split_fields(body, 2)
    if fields is None or not _company_fields(fields[0], fields[1], 12):
        return None
    return f"{CANONICAL_ORIGIN}/417/{_with_check_digit(fields[0] + fields[1])}"


_EPC_CONVERTERS = {
    ("id", "sgtin"): _sgtin,
    ("id", "sscc"): _sscc,
    ("id", "sgln"): _sgln,
    ("id", "grai"): _grai,
    ("id", "giai"): _giai,
    ("id", "gdti"): _gdti,
    ("id", "pgln"): _pgln,
    ("class", "lgtin"): _lgtin,
    ("idpat", "sgtin"): _sgtin_pattern,
}


def _from_digital_link(uri: str) -> str | None:
    """Any-domain Digital Link → id.gs1.org, query and fragment dropped, finest qualifier only."""
    parts = urlsplit(uri)
    segments = [segment for segment in parts.path.split("/") if segment]
    start = next((index for index, segment in enumerate(segments) if segment in _QUALIFIERS), None)
    if start is None:
        return None
    pairs = segments[start:]
    if len(pairs) % 2:
        return None
    values = dict(zip(pairs[0::2], pairs[1::2], strict=True))
    if len(values) != len(pairs) // 2 or not all(_DL_VALUE.fullmatch(value) for value in values.values()):
        return None
    key_ai = pairs[0]
    key = _canonical_key(key_ai, values[key_ai])
    if key is None:
        return None
    allowed = _QUALIFIERS[key_ai]
    if any(ai not in (*allowed, key_ai, "22") for ai in values):  # 22 (CPV) is dropped, never kept
        return None
    qualifier = next((ai for ai in allowed if ai in values), None)
    suffix = "" if qualifier is None else f"/{qualifier}/{values[qualifier]}"
    return f"{CANONICAL_ORIGIN}/{key_ai}/{key}{suffix}"


def _canonical_key(ai: str, value: str) -> str | None:
    if ai == "01":
        # GTIN-8/12/13 are written as GTIN-14 with leading zeros.
        return value.zfill(14) if _DIGITS.fullmatch(value) and len(value) in (8, 12, 13, 14) else None
    length = _KEY_LENGTHS.get(ai)
    if length is not None and not (len(value) == length and _DIGITS.fullmatch(value)):
        return None
    return value
