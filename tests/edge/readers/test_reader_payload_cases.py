"""Golden cases for the Zebra and Impinj codecs: ``cases/<name>/{config.toml, input.json|input.bin, expected.json}``.

A bug report becomes a folder: the payload as received, which codec and reader name, and what must come out
(items with their times in ISO form, the rejects, the ignored counts). Every item carries the payload's digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.drivers.impinj_reader import decode_impinj_payload
from edge.drivers.json_payload import Decoded
from edge.drivers.zebra_reader import decode_zebra_payload

CASES = Path(__file__).parent / "cases"
RECEIVED_AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def case_input(folder: Path) -> bytes:
    for name in ("input.json", "input.bin"):
        if (folder / name).exists():
            return (folder / name).read_bytes()
    raise AssertionError(f"{folder} has no input.json or input.bin")


def decode_case(folder: Path) -> tuple[bytes, Decoded[Any]]:
    config = tomllib.loads((folder / "config.toml").read_text())
    payload = case_input(folder)
    codec = {"zebra": decode_zebra_payload, "impinj": decode_impinj_payload}[config["codec"]]
    return payload, codec(payload, reader=config["reader"], received_at=RECEIVED_AT)


def as_plain(decoded: Decoded[Any]) -> dict[str, Any]:
    items = []
    for item in decoded.items:
        fields = dataclasses.asdict(item)
        fields.pop("raw_sha256", None)
        fields["seen_at"] = item.seen_at.isoformat()
        items.append({"kind": type(item).__name__, **fields})
    return {"items": items, "rejects": list(decoded.rejects), "ignored": dict(decoded.ignored)}


@pytest.mark.parametrize("folder", sorted(CASES.iterdir()), ids=lambda folder: folder.name)
def test_golden_case(folder: Path) -> None:
    payload, decoded = decode_case(folder)
    expected = json.loads((folder / "expected.json").read_text())
    assert as_plain(decoded) == expected
    digest = hashlib.sha256(payload).hexdigest()
    assert all(getattr(item, "raw_sha256", digest) == digest for item in decoded.items)
