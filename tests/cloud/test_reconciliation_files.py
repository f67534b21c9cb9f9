"""CSV import of cycle counts and snapshots: bad rows are rejected with file, line and reason; the rest loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.errors import ValidationError
from cloud.reconciliation.files import parse_time, read_cycle_counts, read_snapshot
from cloud.reconciliation.models import CycleCount, RowRejection, SnapshotRow

NOW_US = 1_764_410_400_000_000  # 2025-11-29T10:00:00Z
DOCK = "urn:tallyport:loc:dc1:dock-4"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_cycle_counts_load_good_rows_and_reject_each_bad_row_with_file_line_and_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "counts.csv",
        "location,gtin,quantity,counted_at,counter,epcs\n"
        f"{DOCK},09501101530003,12,2026-11-29T10:00:00Z,alice,\n"
        f"{DOCK},09501101530004,3,,bob,\n"  # check digit wrong
        f"{DOCK},5901234123457,-1,,bob,\n"  # negative quantity
        "\n"  # blank lines are skipped, not rejected
        f"{DOCK},5901234123457,4.5,2026-11-29T11:00:00+01:00,carol,urn:epc:id:sgtin:5901234.012345.1;30ABC\n"
        f"{DOCK},5901234123457,4,2026-11-29 10:00:00,dave,\n"  # no zone offset
        f" ,5901234123457,4,,erin,\n"  # no location
        f"{DOCK},5901234123457,4,,,\n"  # no counter
        f"{DOCK},5901234123457,4,,frank\n",  # a cell short
    )
    result = read_cycle_counts(path, NOW_US)
    assert result.rows == (
        CycleCount(DOCK, "09501101530003", 12.0, 1_795_946_400_000_000, "alice", None),
        CycleCount(
            DOCK,
            "05901234123457",
            4.5,
            1_795_946_400_000_000,
            "carol",
            ("urn:epc:id:sgtin:5901234.012345.1", "30ABC"),
        ),
    )
    where = str(path)
    assert result.rejections == (
        RowRejection(where, 3, "gtin '09501101530004': check digit should be 3"),
        RowRejection(where, 4, "quantity -1.0: expected a number from 0 to 1e+12"),
        RowRejection(where, 7, "counted_at '2026-11-29 10:00:00': needs a zone offset, e.g. Z or +01:00"),
        RowRejection(where, 8, "location is empty"),
        RowRejection(where, 9, "counter is empty"),
        RowRejection(where, 10, "expected 6 cells as in the header, got 5"),
    )
    assert str(result.rejections[0]) == f"{where}:3: gtin '09501101530004': check digit should be 3"


def test_an_empty_counted_at_is_the_time_of_import(tmp_path: Path) -> None:
    path = write(tmp_path, "counts.csv", f"gtin,location,counter,quantity\n09501101530003,{DOCK},alice,7\n")
    result = read_cycle_counts(path, NOW_US)
    assert result.rows == (CycleCount(DOCK, "09501101530003", 7.0, NOW_US, "alice", None),)
    assert result.rejections == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file; expected a header line: location,gtin,quantity,counted_at,counter,epcs"),
        ("location,gtin,quantity\n", ":1: the header has no 'counter' column"),
        ("location,gtin,quantity,counter,quantitiy\n", ":1: unknown column 'quantitiy' in the header"),
        ("location,gtin,quantity,counter,gtin\n", ":1: column 'gtin' appears twice in the header"),
        ('location,gtin,quantity,counter\n"x,1,2,3\n', ":2: not valid CSV"),
    ],
)
def test_a_bad_header_or_broken_csv_rejects_the_file_saying_where(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "counts.csv", text)
    with pytest.raises(ValidationError) as caught:
        read_cycle_counts(path, NOW_US)
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_a_file_that_is_not_utf8_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_bytes(b"location,gtin,quantity,counter\nurn:x,09501101530003,1,\xff\n")
    with pytest.raises(ValidationError, match=r"counts\.csv:2: not UTF-8 text"):
        read_cycle_counts(path, NOW_US)


def test_snapshot_rows_load_and_a_place_listed_twice_is_rejected_on_its_second_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "erp.csv",
        "\ufefflocation,gtin,quantity\n"  # a byte-order mark, as spreadsheet exports write
        f"{DOCK},09501101530003,10\n"
        f"{DOCK},9501101530003,11\n"  # the same GTIN as GTIN-13
        f"{DOCK},abc,1\n"
        f"{DOCK},05901234123457,nan\n"
        f"{DOCK},05901234123457,2\n",
    )
    result = read_snapshot(path)
    assert result.rows == (SnapshotRow(DOCK, "09501101530003", 10.0), SnapshotRow(DOCK, "05901234123457", 2.0))
    where = str(path)
    assert result.rejections == (
        RowRejection(where, 3, f"09501101530003 at {DOCK} is already listed on line 2"),
        RowRejection(where, 4, "gtin 'abc': expected 8, 12, 13 or 14 digits"),
        RowRejection(where, 5, "quantity 'nan': expected a finite number"),
    )


def test_parse_time_reads_offsets_exactly() -> None:
    assert parse_time("2026-11-29T10:00:00.000001Z") == 1_795_946_400_000_001
    assert parse_time("2026-11-29T11:00:00+01:00") == 1_795_946_400_000_000
    with pytest.raises(ValueError, match="expected a year from 2000 to 2099"):
        parse_time("1999-12-31T23:59:59Z")
