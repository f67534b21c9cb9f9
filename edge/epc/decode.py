"""Decode a tag's EPC bank (hex) into its GS1 identity: pure, table-driven, and it never raises.

`decode_epc` reads the five 96-bit GS1 schemes a dock door meets (SGTIN, SSCC, SGLN, GRAI, GIAI) from
the partition tables in `edge.epc.partitions`, and gives each its EPC pure-identity URI, its tag URI, its
GS1 key(s) with check digit and its canonical id: the GS1 Digital Link URI on id.gs1.org, the form the
EPCIS event hash uses (standards.md §1.5). Two other outcomes:

- ``raw``: well-formed hex whose header is none of those five (a factory EPC such as ``E280…``, a
  GID-96, an SGTIN-198…). It is not a decoding error: the tag is passed through with the TDS raw URI
  ``urn:epc:raw:{bits}.x{HEX}`` as its identity.
- ``invalid``: not hex, an odd number of hex digits, longer than an EPC bank can hold, or one of the five
  headers with bits that TDS/TDT forbid (wrong length, partition value 7, a company prefix or reference
  wider than its partition allows, non-zero SSCC-96 unallocated bits). ``error`` says which, prefixed by
  the scheme; such a read must be quarantined, never turned into an event.

``scheme == "invalid"`` exactly when ``error`` is non-empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from edge.drivers.scanner.gs1 import digital_link_gtin_serial, digital_link_sscc, gs1_check_digit
from edge.epc.partitions import (
    EPC_BITS_96,
    FILTER_BITS,
    HEADER_BITS,
    PARTITION_BITS,
    SCHEMES_96,
    Partition,
    Scheme96,
)

__all__ = ["EPC_HEX_LENGTH_MAX", "DecodedEpc", "EpcScheme", "decode_epc"]

EpcScheme = Literal["sgtin-96", "sscc-96", "sgln-96", "grai-96", "giai-96", "raw", "invalid"]

# The Gen2 PC word gives the EPC length in 16-bit words in 5 bits: at most 31 words, 496 bits.
EPC_BITS_MAX = 496
EPC_HEX_LENGTH_MAX = EPC_BITS_MAX // 4
# An invalid input is echoed in `epc_hex` at most this long, so a hostile megabyte cannot travel on.
_ECHO_LENGTH_MAX = EPC_HEX_LENGTH_MAX + 4

_HEX = re.compile(r"[0-9A-Fa-f]+")  # ASCII only: str.isalnum and \w accept other scripts' digits
_DIGITAL_LINK_BASE = "https://id.gs1.org"
_SECOND_FIELD_NAMES = {
    "sgtin-96": "indicator and item reference",
    "sscc-96": "extension digit and serial reference",
    "sgln-96": "location reference",
    "grai-96": "asset type",
    "giai-96": "individual asset reference",
}


@dataclass(frozen=True)
class DecodedEpc:
    """What one EPC means. Fields that do not apply to the scheme are empty strings (or None)."""

    scheme: EpcScheme
    epc_hex: str  # the input, upper-case
    filter_value: int | None = None
    pure_identity_uri: str = ""  # urn:epc:id:sgtin:0614141.812345.6789, or urn:epc:raw:96.xE280…
    tag_uri: str = ""  # urn:epc:tag:sgtin-96:3.0614141.812345.6789 (keeps the filter value)
    gtin: str = ""  # GTIN-14 with check digit (SGTIN)
    serial: str = ""  # AI (21) serial of an SGTIN, AI (8003) serial part of a GRAI; decimal, no leading zeros
    sscc: str = ""  # SSCC-18 with check digit
    gln: str = ""  # GLN-13 with check digit (SGLN)
    gln_extension: str = ""  # AI (254); "0" means none
    grai: str = ""  # the AI (8003) value: "0" + 13-digit GRAI with check digit + serial
    giai: str = ""  # the AI (8004) value: company prefix + asset reference
    canonical_id: str = ""  # GS1 Digital Link URI on id.gs1.org; the raw URI for raw EPCs; empty if invalid
    error: str = ""  # why it is invalid; empty otherwise

    @property
    def valid(self) -> bool:
        """Whether the EPC may name an object in an event (a GS1 scheme or a raw pass-through)."""
        return self.scheme != "invalid"


def decode_epc(epc_hex: str) -> DecodedEpc:
    """Decode an EPC bank given as hex (either case). Never raises; see the module docstring."""
    if not isinstance(epc_hex, str):
        return _invalid("", f"expected a hex string, got {type(epc_hex).__name__}")
    if not epc_hex:
        return _invalid("", "empty EPC")
    echo = epc_hex[:_ECHO_LENGTH_MAX].upper()
    if len(epc_hex) > EPC_HEX_LENGTH_MAX:
        return _invalid(
            echo,
            f"{len(epc_hex)} characters; an EPC bank holds at most {EPC_BITS_MAX} bits "
            f"({EPC_HEX_LENGTH_MAX} hex digits)",
        )
    if not _HEX.fullmatch(epc_hex):
        return _invalid(echo, "not hexadecimal (only 0-9 and A-F are allowed)")
    if len(epc_hex) % 2:
        return _invalid(echo, f"{len(epc_hex)} hex digits: not a whole number of bytes")
    scheme = SCHEMES_96.get(int(echo[:2], 16))
    if scheme is None:
        raw_uri = f"urn:epc:raw:{len(echo) * 4}.x{echo}"
        return DecodedEpc(scheme="raw", epc_hex=echo, pure_identity_uri=raw_uri, canonical_id=raw_uri)
    if len(echo) * 4 != EPC_BITS_96:
        return _invalid(
            echo,
            f"{scheme.name}: header {echo[:2]} needs exactly {EPC_BITS_96} bits ({EPC_BITS_96 // 4} hex digits), "
            f"got {len(echo) * 4}",
        )
    return _decode_96(scheme, echo)


def _invalid(echo: str, reason: str) -> DecodedEpc:
    return DecodedEpc(scheme="invalid", epc_hex=echo, error=reason)


class _Bits:
    """Reads big-endian fields off a 96-bit integer, most significant first."""

    def __init__(self, value: int) -> None:
        self._value = value
        self._left = EPC_BITS_96

    def take(self, width: int) -> int:
        self._left -= width
        assert self._left >= 0, "the partition tables fill exactly 96 bits"
        return (self._value >> self._left) & ((1 << width) - 1)


def _decode_96(scheme: Scheme96, epc_hex: str) -> DecodedEpc:
    bits = _Bits(int(epc_hex, 16))
    bits.take(HEADER_BITS)
    filter_value = bits.take(FILTER_BITS)
    partition_value = bits.take(PARTITION_BITS)
    if partition_value >= len(scheme.partitions):
        return _invalid(epc_hex, f"{scheme.name}: partition value {partition_value} is undefined (0 to 6 are)")
    row = scheme.partitions[partition_value]
    company_prefix_value = bits.take(row.company_prefix_bits)
    reference_value = bits.take(row.reference_bits)
    third_value = bits.take(scheme.third_field_bits)
    error = _range_error(scheme, row, company_prefix_value, reference_value, third_value)
    if error:
        return _invalid(epc_hex, f"{scheme.name}: {error}")
    company_prefix = f"{company_prefix_value:0{row.company_prefix_digits}d}"
    if scheme.reference_padded:
        # K = 0 (SGLN and GRAI at partition 0) gives an empty field, not "0": the URI reads "CP..ext".
        reference = f"{reference_value:0{row.reference_digits}d}" if row.reference_digits else ""
    else:
        reference = str(reference_value)
    return _BUILDERS[scheme.name](epc_hex, filter_value, company_prefix, reference, third_value)


def _range_error(scheme: Scheme96, row: Partition, company_prefix: int, reference: int, third: int) -> str:
    if company_prefix >= 10**row.company_prefix_digits:
        return (
            f"company prefix {company_prefix} is wider than the {row.company_prefix_digits} digits "
            f"partition {row.value} allows"
        )
    if scheme.reference_padded and reference >= 10**row.reference_digits:
        return (
            f"{_SECOND_FIELD_NAMES[scheme.name]} {reference} is wider than the {row.reference_digits} digits "
            f"partition {row.value} allows"
        )
    if scheme.third_field == "zero" and third != 0:
        return f"the {scheme.third_field_bits} unallocated bits must be zero, got {third:#x}"
    return ""


def _with_check_digit(body: str) -> str:
    return body + str(gs1_check_digit(body))


def _sgtin(epc_hex: str, filter_value: int, company_prefix: str, reference: str, serial_value: int) -> DecodedEpc:
    serial = str(serial_value)
    gtin = _with_check_digit(reference[0] + company_prefix + reference[1:])
    fields = f"{company_prefix}.{reference}.{serial}"
    return DecodedEpc(
        scheme="sgtin-96",
        epc_hex=epc_hex,
        filter_value=filter_value,
        pure_identity_uri=f"urn:epc:id:sgtin:{fields}",
        tag_uri=f"urn:epc:tag:sgtin-96:{filter_value}.{fields}",
        gtin=gtin,
        serial=serial,
        canonical_id=digital_link_gtin_serial(gtin, serial),
    )


def _sscc(epc_hex: str, filter_value: int, company_prefix: str, reference: str, _unallocated: int) -> DecodedEpc:
    sscc = _with_check_digit(reference[0] + company_prefix + reference[1:])
    fields = f"{company_prefix}.{reference}"
    return DecodedEpc(
        scheme="sscc-96",
        epc_hex=epc_hex,
        filter_value=filter_value,
        pure_identity_uri=f"urn:epc:id:sscc:{fields}",
        tag_uri=f"urn:epc:tag:sscc-96:{filter_value}.{fields}",
        sscc=sscc,
        canonical_id=digital_link_sscc(sscc),
    )


def _sgln(epc_hex: str, filter_value: int, company_prefix: str, reference: str, extension_value: int) -> DecodedEpc:
    extension = str(extension_value)
    gln = _with_check_digit(company_prefix + reference)
    fields = f"{company_prefix}.{reference}.{extension}"
    canonical_id = f"{_DIGITAL_LINK_BASE}/414/{gln}"
    if extension != "0":  # TDS: extension 0 in SGLN-96 means "no AI (254)"
        canonical_id += f"/254/{extension}"
    return DecodedEpc(
        scheme="sgln-96",
        epc_hex=epc_hex,
        filter_value=filter_value,
        pure_identity_uri=f"urn:epc:id:sgln:{fields}",
        tag_uri=f"urn:epc:tag:sgln-96:{filter_value}.{fields}",
        gln=gln,
        gln_extension=extension,
        canonical_id=canonical_id,
    )


def _grai(epc_hex: str, filter_value: int, company_prefix: str, reference: str, serial_value: int) -> DecodedEpc:
    serial = str(serial_value)
    # AI (8003) is N14 + X..16: a leading "0" pad, the 13-digit GRAI with its check digit, then the serial.
    grai = "0" + _with_check_digit(company_prefix + reference) + serial
    fields = f"{company_prefix}.{reference}.{serial}"
    return DecodedEpc(
        scheme="grai-96",
        epc_hex=epc_hex,
        filter_value=filter_value,
        pure_identity_uri=f"urn:epc:id:grai:{fields}",
        tag_uri=f"urn:epc:tag:grai-96:{filter_value}.{fields}",
        serial=serial,
        grai=grai,
        canonical_id=f"{_DIGITAL_LINK_BASE}/8003/{grai}",
    )


def _giai(epc_hex: str, filter_value: int, company_prefix: str, reference: str, _none: int) -> DecodedEpc:
    giai = company_prefix + reference
    fields = f"{company_prefix}.{reference}"
    return DecodedEpc(
        scheme="giai-96",
        epc_hex=epc_hex,
        filter_value=filter_value,
        pure_identity_uri=f"urn:epc:id:giai:{fields}",
        tag_uri=f"urn:epc:tag:giai-96:{filter_value}.{fields}",
        giai=giai,
        canonical_id=f"{_DIGITAL_LINK_BASE}/8004/{giai}",
    )


_BUILDERS = {"sgtin-96": _sgtin, "sscc-96": _sscc, "sgln-96": _sgln, "grai-96": _grai, "giai-96": _giai}
