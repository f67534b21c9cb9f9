"""The pure codec: register words → measurements or faults, against the vectors of standards.md §7.1."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from edge.drivers.modbus_bus import DecodedValue, RegisterSpec, ValueFault, decode_register, decode_registers
from edge.drivers.modbus_bus.profiles import DeviceProfile, load_profile
from hw_sim.modbus.registers import SensorModel, input_registers

PROFILES = Path(__file__).resolve().parents[3] / "firmware_config" / "modbus_profiles"


def spec(**fields: object) -> RegisterSpec:
    base: dict[str, object] = {"function_code": 4, "address": 1, "type": "int16", "scale": 0.1}
    base |= {"measurement": "Temperature", "uom": "CEL"}
    return RegisterSpec.model_validate(base | fields)


def profile(name: str) -> DeviceProfile:
    return load_profile(PROFILES / f"{name}.toml")


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([0x0131], 30.5),  # 305
        ([0xFF33], -20.5),  # -205 as int16
        ([0x0000], 0.0),
        ([0x7FFF], 3276.7),
        ([0x8000], -3276.8),
    ],
)
def test_int16_is_signed_and_scaled(words: list[int], expected: float) -> None:
    assert decode_register(spec(), words) == DecodedValue("Temperature", expected, "CEL")


def test_xy_md02_vectors_from_the_vendor_pages() -> None:
    outcomes = decode_registers(profile("xy-md02"), 4, 1, [0xFF33, 0x0222])
    assert outcomes == [
        DecodedValue("Temperature", -20.5, "CEL"),
        DecodedValue("RelativeHumidity", 54.6, "P1"),
    ]
    assert decode_registers(profile("xy-md02"), 4, 1, [0x0131, 0x0222])[0] == DecodedValue("Temperature", 30.5, "CEL")


def test_uint16_keeps_the_high_bit() -> None:
    assert decode_register(spec(type="uint16", scale=1.0), [0xFF33]) == DecodedValue("Temperature", 65331.0, "CEL")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(0, 0.0), (205, 20.5), (9999, 999.9), (10000, 0.0), (10001, -0.1), (10105, -10.5), (10400, -40.0)],
)
def test_kincony_offset10000_negatives(raw: int, expected: float) -> None:
    outcome = decode_register(spec(type="offset10000"), [raw])
    assert isinstance(outcome, DecodedValue) and outcome.value == expected


@pytest.mark.parametrize("word_order", ["big", "little"])
def test_float32_in_both_word_orders(word_order: str) -> None:
    high, low = struct.unpack(">HH", struct.pack(">f", -18.3))
    words = [high, low] if word_order == "big" else [low, high]
    outcome = decode_register(spec(type="float32", scale=1.0, word_order=word_order), words)
    # The shortest decimal with the same float32 bits, not -18.299999237060547.
    assert outcome == DecodedValue("Temperature", -18.3, "CEL")


def test_float32_in_the_wrong_word_order_is_visibly_wrong() -> None:
    high, low = struct.unpack(">HH", struct.pack(">f", 21.5))
    outcome = decode_register(spec(type="float32", scale=1.0, word_order="little", valid_max=125.0), [high, low])
    assert isinstance(outcome, DecodedValue) and abs(outcome.value) < 1e-30  # a denormal, not 21.5


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_float32_nan_and_infinity_are_faults(value: float) -> None:
    words = list(struct.unpack(">HH", struct.pack(">f", value)))
    outcome = decode_register(spec(type="float32", scale=1.0), words)
    assert isinstance(outcome, ValueFault)
    assert outcome.reason_code == "not_finite"
    assert "FC04 register 0x0001" in outcome.reason and f"0x{words[0]:04X}" in outcome.reason


def test_out_of_range_is_a_fault_with_the_raw_value_in_the_reason() -> None:
    outcomes = decode_registers(profile("xy-md02"), 4, 1, [0x7FFF, 0x03E9])  # 3276.7 degC, 100.1 %RH
    assert [outcome.reason_code for outcome in outcomes if isinstance(outcome, ValueFault)] == [
        "out_of_range",
        "out_of_range",
    ]
    temperature = outcomes[0]
    assert isinstance(temperature, ValueFault)
    assert temperature.reason == (
        "Temperature 3276.7 CEL at FC04 register 0x0001 (raw 0x7FFF) is above valid_max 125.0: "
        "sensor fault, not a reading"
    )
    assert "below valid_min -40.0" in str(decode_registers(profile("xy-md02"), 4, 1, [0xFE6F, 0])[0])  # -40.1


def test_bounds_themselves_are_valid() -> None:
    outcomes = decode_registers(profile("xy-md02"), 4, 1, [0xFE70, 1000])  # -40.0, 100.0
    assert outcomes == [DecodedValue("Temperature", -40.0, "CEL"), DecodedValue("RelativeHumidity", 100.0, "P1")]


def test_only_registers_inside_the_block_are_decoded() -> None:
    xy = profile("xy-md02")
    assert decode_registers(xy, 4, 2, [0x0222]) == [DecodedValue("RelativeHumidity", 54.6, "P1")]
    assert decode_registers(xy, 3, 1, [0x0131, 0x0222]) == []  # other function code
    assert decode_registers(xy, 4, 10, [1, 2]) == []


def test_a_float_cut_short_by_the_block_is_a_short_response_fault() -> None:
    floats = profile("kincony-sht30-float")
    high, low = struct.unpack(">HH", struct.pack(">f", 21.5))
    outcomes = decode_registers(floats, 4, 2, [high, low, 0x4248])  # humidity's second word missing
    assert outcomes[0] == DecodedValue("Temperature", 21.5, "CEL")
    assert isinstance(outcomes[1], ValueFault) and outcomes[1].reason_code == "short_response"


@pytest.mark.parametrize("name", ["xy-md02", "kincony-sht30", "kincony-sht30-float"])
def test_shipped_profiles_read_back_what_the_simulated_devices_hold(name: str) -> None:
    # The simulator's register maps are written independently of the profiles: every tenth of a degree
    # across the sensors' range must survive the round trip.
    loaded = profile(name)
    model: SensorModel = "xy-md02" if name == "xy-md02" else "kincony-sht30"
    block = loaded.blocks[0]
    for tenths in range(-400, 1251, 7):
        start, registers = input_registers(model, tenths / 10, 45.6)
        window = list(registers[block.address - start : block.end - start])
        assert decode_registers(loaded, 4, block.address, window) == [
            DecodedValue("Temperature", tenths / 10, "CEL"),
            DecodedValue("RelativeHumidity", 45.6, "P1"),
        ], tenths
