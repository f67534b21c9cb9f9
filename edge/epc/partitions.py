"""The EPC Tag Data Standard's 96-bit GS1 schemes as data: header, partition table and field widths.

Every scheme here has the same shape (TDS §14, standards.md §1.1–1.2): an 8-bit header, a 3-bit filter,
a 3-bit partition value P, then the GS1 Company Prefix in M bits (L decimal digits) and a second field in
N bits (K decimal digits), then a third field whose meaning differs per scheme (a serial, an extension, or
24 unallocated zero bits). The partition value picks (M, L, N, K); value 7 is undefined in every table.

The tables are the TDS/TDT 2.0 values (`https://ref.gs1.org/standards/tdt/2.0.0/<SCHEME>-96.xml`), also
found in epcpy's `PARTITION_TABLE_P` dicts; `tests/edge/epc/test_epc_decode.py` checks them against epcpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "EPC_BITS_96",
    "FILTER_BITS",
    "HEADER_BITS",
    "PARTITION_BITS",
    "SCHEMES_96",
    "Partition",
    "Scheme96",
    "SchemeName",
    "ThirdField",
]

HEADER_BITS = 8
FILTER_BITS = 3
PARTITION_BITS = 3
EPC_BITS_96 = 96

SchemeName = Literal["sgtin-96", "sscc-96", "sgln-96", "grai-96", "giai-96"]
# What the bits after the second field hold: a numeric serial (SGTIN, GRAI), the SGLN extension
# (AI 254), unallocated bits that must be zero (SSCC), or nothing (GIAI: its second field runs to the end).
ThirdField = Literal["serial", "extension", "zero", "none"]


@dataclass(frozen=True)
class Partition:
    """One row of a partition table: P, and the bit and digit widths of the two fields it selects."""

    value: int  # P
    company_prefix_bits: int  # M
    company_prefix_digits: int  # L
    reference_bits: int  # N
    reference_digits: int  # K; the second field is zero-padded to K digits (GIAI: not padded)


@dataclass(frozen=True)
class Scheme96:
    """A 96-bit GS1 EPC scheme: its header byte, partition table and third field."""

    name: SchemeName
    header: int
    partitions: tuple[Partition, ...]  # indexed by P (0..6)
    third_field: ThirdField
    third_field_bits: int
    # GIAI-96's asset reference is an integer printed without padding; every other second field is a
    # fixed-width digit string whose value must be below 10**K.
    reference_padded: bool = True


def _table(rows: tuple[tuple[int, int, int, int], ...]) -> tuple[Partition, ...]:
    return tuple(Partition(value, m, l_digits, n, k) for value, (m, l_digits, n, k) in enumerate(rows))


# (M, L, N, K) per P = 0..6.
_SGTIN = _table(
    ((40, 12, 4, 1), (37, 11, 7, 2), (34, 10, 10, 3), (30, 9, 14, 4), (27, 8, 17, 5), (24, 7, 20, 6), (20, 6, 24, 7))
)
_SSCC = _table(
    (
        (40, 12, 18, 5),
        (37, 11, 21, 6),
        (34, 10, 24, 7),
        (30, 9, 28, 8),
        (27, 8, 31, 9),
        (24, 7, 34, 10),
        (20, 6, 38, 11),
    )
)
_SGLN = _table(
    ((40, 12, 1, 0), (37, 11, 4, 1), (34, 10, 7, 2), (30, 9, 11, 3), (27, 8, 14, 4), (24, 7, 17, 5), (20, 6, 21, 6))
)
_GRAI = _table(
    ((40, 12, 4, 0), (37, 11, 7, 1), (34, 10, 10, 2), (30, 9, 14, 3), (27, 8, 17, 4), (24, 7, 20, 5), (20, 6, 24, 6))
)
_GIAI = _table(
    (
        (40, 12, 42, 13),
        (37, 11, 45, 14),
        (34, 10, 48, 15),
        (30, 9, 52, 16),
        (27, 8, 55, 17),
        (24, 7, 58, 18),
        (20, 6, 62, 19),
    )
)

SCHEMES_96: dict[int, Scheme96] = {
    scheme.header: scheme
    for scheme in (
        Scheme96("sgtin-96", 0x30, _SGTIN, "serial", 38),
        Scheme96("sscc-96", 0x31, _SSCC, "zero", 24),
        Scheme96("sgln-96", 0x32, _SGLN, "extension", 41),
        Scheme96("grai-96", 0x33, _GRAI, "serial", 38),
        Scheme96("giai-96", 0x34, _GIAI, "none", 0, reference_padded=False),
    )
}


def _check_tables() -> None:
    # Each row must fill the 96 bits exactly and keep L + K constant: a typo here would decode garbage.
    for scheme in SCHEMES_96.values():
        assert len(scheme.partitions) == 7, scheme.name
        digits = {row.company_prefix_digits + row.reference_digits for row in scheme.partitions}
        assert len(digits) == 1, scheme.name
        for row in scheme.partitions:
            used = HEADER_BITS + FILTER_BITS + PARTITION_BITS + row.company_prefix_bits + row.reference_bits
            assert used + scheme.third_field_bits == EPC_BITS_96, (scheme.name, row.value)
            assert row.company_prefix_digits == 12 - row.value, (scheme.name, row.value)
            assert 10**row.company_prefix_digits <= 2**row.company_prefix_bits, (scheme.name, row.value)
            if scheme.reference_padded:
                assert 10**row.reference_digits <= 2**row.reference_bits, (scheme.name, row.value)


_check_tables()
