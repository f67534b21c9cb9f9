"""What a simulated scanner scans: a TOML scenario file, validated, and the barcodes it yields.

Each scan carries its ground truth (the object or quantity it should become, or that it must be
rejected), so a test can score what reached the cloud against what was scanned.
"""

from __future__ import annotations

import random
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

GS = "\x1d"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScannerSection(_Strict):
    link: Path = Field(description="symlink the gateway opens as its serial port")
    prefix: str = ""
    suffix: str = "\r\n"
    aim: bool = True
    ack_nak: bool = True
    ack_timeout_ms: int = Field(2000, ge=10, le=60_000)
    nak_retries_max: int = Field(3, ge=0, le=10)
    scan_interval_ms: int = Field(200, ge=0, le=60_000)
    noise_probability: float = Field(0.0, ge=0.0, le=1.0)
    # A real scanner gives up after its response time-out; the simulator can keep resending so that a
    # test can count every scan through a gateway restart.
    retransmit_until_acked: bool = True


class ItemSection(_Strict):
    kind: Literal["serialized", "gtin", "sscc", "digital_link", "invalid", "not_gs1"]
    weight: int = Field(1, ge=1)
    gtin: str = Field("09501101530003", pattern=r"^\d{14}$")
    company_prefix: str = Field("0614141", pattern=r"^\d{6,12}$")
    batch: str = ""
    expiry: date | None = None


class RunSection(_Strict):
    scans: int = Field(100, ge=0, description="0 = forever")
    replug_every: int = Field(0, ge=0, description="re-enumerate the port every N scans, 0 = never")
    seed: int = 1


class ScannerScenario(_Strict):
    scanner: ScannerSection
    items: list[ItemSection] = Field(min_length=1)
    run: RunSection = RunSection()


def load_scenario(path: Path) -> ScannerScenario:
    try:
        return ScannerScenario.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"{path}: cannot read the scenario: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise SystemExit(f"{path}: invalid scenario: {problems}") from exc


@dataclass(frozen=True)
class Scan:
    number: int
    data: str  # the barcode payload after the AIM id, as the scanner transmits it
    symbology: str  # AIM id, e.g. "]C1"
    valid: bool
    object_id: str = ""  # canonical id the cloud should hold a position for
    gtin: str = ""
    quantity: float = 0.0  # for class-level scans


def check_digit(body: str) -> int:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def _serial(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(rng.choice(alphabet) for _ in range(10))


def _make(item: ItemSection, number: int, rng: random.Random) -> Scan:
    gtin = item.gtin
    if item.kind == "serialized":
        serial = _serial(rng)
        data = f"01{gtin}"
        if item.expiry is not None:
            data += f"17{item.expiry:%y%m%d}"
        if item.batch:
            data += f"10{item.batch}{GS}"
        data += f"21{serial}"
        return Scan(number, data, "]C1", True, f"https://id.gs1.org/01/{gtin}/21/{serial}", gtin)
    if item.kind == "digital_link":
        serial = _serial(rng)
        data = f"https://example.com/01/{gtin}/21/{serial}"
        return Scan(number, data, "]Q1", True, f"https://id.gs1.org/01/{gtin}/21/{serial}", gtin)
    if item.kind == "sscc":
        digits = 16 - len(item.company_prefix)  # extension digit + prefix + serial reference = 17
        body = f"{rng.randint(0, 9)}{item.company_prefix}{rng.randrange(10**digits):0{digits}d}"
        sscc = body + str(check_digit(body))
        return Scan(number, f"00{sscc}", "]C1", True, f"https://id.gs1.org/00/{sscc}")
    if item.kind == "gtin":
        ean13 = gtin[1:] if gtin.startswith("0") else gtin
        return Scan(number, ean13, "]E0", True, gtin=gtin, quantity=1.0)
    if item.kind == "invalid":
        wrong = str((int(gtin[-1]) + 1) % 10)
        return Scan(number, f"01{gtin[:-1]}{wrong}21{_serial(rng)}", "]C1", False)
    return Scan(number, "".join(rng.choice("ABCDEFGHIJ!#%") for _ in range(8)), "]C0", False)


def generate_scans(scenario: ScannerScenario) -> Iterator[Scan]:
    """The scenario's scans, deterministic for its seed."""
    rng = random.Random(scenario.run.seed)
    weights = [item.weight for item in scenario.items]
    number = 0
    while scenario.run.scans == 0 or number < scenario.run.scans:
        number += 1
        (item,) = rng.choices(scenario.items, weights=weights)
        yield _make(item, number, rng)
