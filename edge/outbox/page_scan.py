"""Read table rows straight from the pages of a damaged SQLite file, without its b-tree.

SQLite finds a row by descending from its table's root page; one unreadable interior page (the root is
rewritten on every split, so it is the likeliest to be torn) hides every leaf below it, though the
leaves themselves are intact. This scanner visits every page of the file, and decodes each *table leaf*
page (type 0x0D) by its own header: cell pointers, the varint payload length and rowid of each cell, the
record header's serial types, overflow chains (bounded). It is the part of `sqlite3 .recover` that the
outbox salvage needs, in pure Python: the stdlib's sqlite3 module has no recovery API.

What it returns is raw: a cell from a stale page can look valid, so callers check each row (the outbox
salvage parses each event and compares it with its row) and decide which rows they trust. Pages on the
freelist (when the header still says where it is) are skipped: their cells are rows deleted long ago.
Format reference: https://www.sqlite.org/fileformat2.html (sections 1.3, 1.6, 2.1).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LeafRow", "scan_table_leaves"]

PAGE_TYPE_TABLE_LEAF = 0x0D
SQLITE_MAGIC = b"SQLite format 3\x00"
OVERFLOW_PAGES_MAX = 1024  # per cell: a 4 MiB row at 4 KiB pages; more means a loop or garbage
FREELIST_PAGES_MAX = 10_000_000

Value = int | float | str | bytes | None


@dataclass(frozen=True, slots=True)
class LeafRow:
    page: int
    rowid: int
    values: tuple[Value, ...]


def scan_table_leaves(path: Path, page_size: int) -> Iterator[LeafRow]:
    """Every cell of every table-leaf page of the file that decodes as a record, page by page."""
    with path.open("rb") as file:
        if path.stat().st_size < page_size:
            return
        # Mapped, not read: a gateway's outbox may be far larger than the memory it may use.
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            data = memoryview(mapped)
            try:
                pages = len(data) // page_size
                skip = _freelist_pages(data, page_size, pages)
                for page in range(1, pages + 1):
                    if page not in skip:
                        yield from _leaf_rows(data, page_size, pages, page)
            finally:
                data.release()


def _page(data: memoryview, page_size: int, page: int) -> bytes:
    return bytes(data[(page - 1) * page_size : page * page_size])


def _freelist_pages(data: memoryview, page_size: int, pages: int) -> set[int]:
    """The pages the header's freelist names (trunks and leaves); empty if the header is not SQLite's."""
    if len(data) < 100 or bytes(data[:16]) != SQLITE_MAGIC:
        return set()
    trunk, _count = struct.unpack(">II", bytes(data[32:40]))
    free: set[int] = set()
    while 0 < trunk <= pages and trunk not in free and len(free) < FREELIST_PAGES_MAX:
        free.add(trunk)
        body = _page(data, page_size, trunk)
        next_trunk, leaves = struct.unpack(">II", body[:8])
        leaves = min(leaves, (page_size - 8) // 4)
        free.update(p for p in struct.unpack(f">{leaves}I", body[8 : 8 + 4 * leaves]) if 0 < p <= pages)
        trunk = next_trunk
    return free


def _leaf_rows(data: memoryview, page_size: int, pages: int, page: int) -> Iterator[LeafRow]:
    body = _page(data, page_size, page)
    header = 100 if page == 1 else 0
    if len(body) < header + 8 or body[header] != PAGE_TYPE_TABLE_LEAF:
        return
    (cells,) = struct.unpack(">H", body[header + 3 : header + 5])
    if header + 8 + 2 * cells > page_size:
        return
    for index in range(cells):
        (pointer,) = struct.unpack(">H", body[header + 8 + 2 * index : header + 10 + 2 * index])
        try:
            row = _cell(data, page_size, pages, body, pointer)
        except (ValueError, IndexError, struct.error, UnicodeDecodeError):
            continue  # a damaged cell: skip it, keep the page's others
        if row is not None:
            yield LeafRow(page, row[0], row[1])


def _cell(
    data: memoryview, page_size: int, pages: int, body: bytes, pointer: int
) -> tuple[int, tuple[Value, ...]] | None:
    if not 8 <= pointer < page_size:
        return None
    payload_length, at = _varint(body, pointer)
    rowid, at = _varint(body, at)
    rowid = rowid - (1 << 64) if rowid >= 1 << 63 else rowid
    usable = page_size  # reserved bytes per page are 0 in every file this agent makes
    local = _local_payload(payload_length, usable)
    payload = body[at : at + local]
    if len(payload) != local:
        return None
    if local < payload_length:
        payload += _overflow(data, page_size, pages, body[at + local : at + local + 4], payload_length - local)
    return rowid, _record(payload)


def _local_payload(payload_length: int, usable: int) -> int:
    """How much of a table-leaf cell's payload is on its page (fileformat2 section 1.6)."""
    most = usable - 35
    if payload_length <= most:
        return payload_length
    least = ((usable - 12) * 32 // 255) - 23
    local = least + (payload_length - least) % (usable - 4)
    return local if local <= most else least


def _overflow(data: memoryview, page_size: int, pages: int, first: bytes, remaining: int) -> bytes:
    (page,) = struct.unpack(">I", first)
    parts: list[bytes] = []
    for _ in range(OVERFLOW_PAGES_MAX):
        if remaining <= 0:
            break
        if not 0 < page <= pages:
            raise ValueError("overflow chain leaves the file")
        body = _page(data, page_size, page)
        (page,) = struct.unpack(">I", body[:4])
        chunk = body[4 : 4 + min(remaining, page_size - 4)]
        parts.append(chunk)
        remaining -= len(chunk)
    if remaining > 0:
        raise ValueError("overflow chain too long")
    return b"".join(parts)


def _varint(buffer: bytes, at: int) -> tuple[int, int]:
    value = 0
    for index in range(9):
        byte = buffer[at + index]
        if index == 8:
            return (value << 8) | byte, at + 9
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + index + 1
    raise AssertionError("unreachable")


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _record(payload: bytes) -> tuple[Value, ...]:
    """A record's values by its header's serial types (fileformat2 section 2.1)."""
    header_size, at = _varint(payload, 0)
    if not 0 < header_size <= len(payload):
        raise ValueError("record header out of bounds")
    types = []
    while at < header_size:
        serial, at = _varint(payload, at)
        types.append(serial)
    values: list[Value] = []
    at = header_size
    for serial in types:
        if serial == 0:
            values.append(None)
        elif serial in _INT_SIZES:
            size = _INT_SIZES[serial]
            values.append(int.from_bytes(payload[at : at + size], "big", signed=True))
            at += size
        elif serial == 7:
            (number,) = struct.unpack(">d", payload[at : at + 8])
            values.append(number)
            at += 8
        elif serial in (8, 9):
            values.append(serial - 8)
        elif serial >= 12:
            size = (serial - 12) // 2
            raw = payload[at : at + size]
            values.append(raw if serial % 2 == 0 else raw.decode("utf-8"))
            at += size
        else:
            raise ValueError(f"reserved serial type {serial}")
        if at > len(payload):
            raise ValueError("record body out of bounds")
    return tuple(values)
