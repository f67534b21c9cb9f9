"""Fuzz the Modbus path: register values through the codec, RTU response frames through pymodbus's real client,
framer and our link and poller, and device profile files through the profile loader.

Properties:

* ``decode_register`` never raises: any words under any valid register spec become a finite value within the
  spec's valid range, or a ``ValueFault`` with a reason;
* any bytes a device sends back become readings or ``ModbusFault``s (garbled, exception response, rejected
  value) with a reason and the raw bytes, which ``SensorIntake`` quarantines; only silence (no byte at all)
  produces nothing, as documented, and counts as no response;
* a profile file, however mangled, loads or raises ``ConfigError`` naming the file.

The RTU harness is pymodbus's ``AsyncModbusSerialClient`` as ``make_client`` builds it for a bus, connected to
an in-memory line: each request written to it is answered with the fuzzed bytes, in the fuzzed chunks, through
the client's own ``data_received``. Everything above the wire (the RTU framer, CRC checks, transaction
matching, the ``trace_packet`` hook, ``ModbusLink``, ``DevicePoller``, the codec) is the real code.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
import tomllib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fuzz_mutations import mutated_bytes, mutated_tree, to_toml
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from pymodbus.framer.rtu import FramerRTU

from edge.drivers.modbus_bus import (
    ModbusBusConfig,
    ModbusFault,
    RegisterSpec,
    ValueFault,
    decode_register,
    load_profile,
    parse_profile,
)
from edge.drivers.modbus_bus.driver import DevicePoller
from edge.drivers.modbus_bus.link import ModbusLink, TracePacket, make_client
from edge.errors import ConfigError
from edge.pipeline.reads import SensorReading

fuzz = settings(settings.get_profile("tallyport-fuzz"))
PROFILES_DIR = Path(__file__).resolve().parents[2] / "firmware_config" / "modbus_profiles"
PROFILES = {path.stem: load_profile(path) for path in sorted(PROFILES_DIR.glob("*.toml"))}
DEVICE_ID = 7
SPECIAL_WORDS = [0x0000, 0x0001, 0x7FFF, 0x8000, 0xFFFF, 0x2710, 0x270F, 0x7F80, 0xFF80, 0x7FC0, 0x7F7F, 0x0080]


@pytest.fixture(autouse=True)
def _quiet_pymodbus() -> Iterator[None]:
    # pymodbus logs an ERROR for every unanswered or garbled request; the poller counts them itself.
    logger = logging.getLogger("pymodbus")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


# -- the codec ---------------------------------------------------------------------------------------------------

words = st.sampled_from(SPECIAL_WORDS) | st.integers(min_value=0, max_value=0xFFFF)
bounds = st.none() | st.sampled_from([-1e308, -40.0, 0.0, 100.0, 1e308]) | st.floats(-1e6, 1e6)


@st.composite
def register_specs(draw: st.DrawFn) -> RegisterSpec:
    measurement, uom = draw(st.sampled_from([("Temperature", "CEL"), ("RelativeHumidity", "P1")]))
    register_type = draw(st.sampled_from(["int16", "uint16", "offset10000", "float32"]))
    low, high = sorted([draw(bounds) or -math.inf, draw(bounds) or math.inf])
    return RegisterSpec(
        function_code=draw(st.sampled_from([3, 4])),
        address=draw(st.integers(min_value=0, max_value=65534)),
        type=register_type,
        word_order=draw(st.sampled_from(["big", "little"])) if register_type == "float32" else None,
        scale=draw(
            st.sampled_from([1.0, 0.1, 0.01, -1.0, 1e300, 1e-300, 3.4e38])
            | st.floats(allow_nan=False, allow_infinity=False).filter(bool)
        ),
        measurement=measurement,
        uom=uom,
        valid_min=low if math.isfinite(low) and low < high else None,
        valid_max=high if math.isfinite(high) and low < high else None,
    )


FLOAT32_SPEC = RegisterSpec(function_code=3, address=0, type="float32", measurement="Temperature", uom="CEL")


@fuzz
@given(spec=register_specs(), raw=st.lists(words, min_size=0, max_size=3))
# Regression: the largest finite float32 (0x7F7FFFFF) crashed the shortest-decimal search with
# OverflowError (its 9-digit rounding, 3.40282347e38, is past the float32 range).
@example(spec=FLOAT32_SPEC, raw=[0x7F7F, 0xFFFF])
@example(spec=FLOAT32_SPEC.model_copy(update={"word_order": "little"}), raw=[0xFFFF, 0xFF7F])
# Regression: a finite value times a finite scale overflowed to inf and passed as a reading.
@example(spec=FLOAT32_SPEC.model_copy(update={"scale": 1e300}), raw=[0x7F00, 0x0000])
def test_fuzz_register_words_decode_to_a_value_or_a_fault(spec: RegisterSpec, raw: list[int]) -> None:
    outcome = decode_register(spec, raw)
    if isinstance(outcome, ValueFault):
        assert outcome.reason.strip() and outcome.measurement == spec.measurement
        return
    assert math.isfinite(outcome.value)
    assert spec.valid_min is None or outcome.value >= spec.valid_min
    assert spec.valid_max is None or outcome.value <= spec.valid_max


# -- RTU response frames through the real pymodbus client ---------------------------------------------------------


class _LineTransport(asyncio.Transport):
    """The serial line as pymodbus's protocol sees it: every request written is answered with ``chunks``."""

    def __init__(self, protocol: Any, chunks: Sequence[bytes]) -> None:
        super().__init__()
        self._protocol = protocol
        self._chunks = chunks
        self._closing = False

    def write(self, data: Any) -> None:
        loop = asyncio.get_running_loop()
        for chunk in self._chunks:
            loop.call_soon(self._deliver, chunk)

    def _deliver(self, chunk: bytes) -> None:
        if not self._closing:
            self._protocol.data_received(chunk)

    def close(self) -> None:
        self._closing = True

    def is_closing(self) -> bool:
        return self._closing


def _client_answering(chunks: Sequence[bytes]) -> Any:
    def factory(config: ModbusBusConfig, trace_packet: TracePacket) -> Any:
        client = make_client(config, trace_packet)

        async def connect_line() -> tuple[asyncio.Transport, Any]:
            transport = _LineTransport(client.ctx, chunks)
            client.ctx.connection_made(transport)
            return transport, client.ctx

        client.ctx.call_create = connect_line
        return client

    return factory


class _FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 11, 29, 10, 0, tzinfo=UTC)

    def unix_ms(self) -> int:
        return 1_764_410_400_000


def _frame(payload: bytes, device_id: int = DEVICE_ID) -> bytes:
    body = bytes([device_id]) + payload
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


@st.composite
def responses(draw: st.DrawFn, function_code: int, count: int) -> bytes:
    registers = draw(st.lists(words, min_size=count, max_size=count))
    data = b"".join(register.to_bytes(2, "big") for register in registers)
    valid = _frame(bytes([function_code, len(data)]) + data)
    kind = draw(st.sampled_from(["valid", "mutated", "exception", "other_device", "short", "noise", "silence"]))
    if kind == "valid":
        return valid
    if kind == "mutated":
        return draw(mutated_bytes(valid, rounds_max=3))
    if kind == "exception":
        return _frame(bytes([function_code | 0x80, draw(st.integers(min_value=0, max_value=255))]))
    if kind == "other_device":
        return _frame(valid[1:-2], device_id=draw(st.integers(min_value=0, max_value=255)))
    if kind == "short":
        fewer = data[: draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))]
        return _frame(bytes([function_code, len(fewer)]) + fewer)
    if kind == "noise":
        return draw(st.binary(min_size=1, max_size=40))
    return b""


# kincony-sht30-float reads two float32 (temperature, humidity) from FC04 0x0002..0x0005.
LARGEST_FLOAT32_FRAME = _frame(bytes([4, 8, 0x7F, 0x7F, 0xFF, 0xFF, 0x42, 0x48, 0x00, 0x00]))
NO_REGISTERS_FRAME = _frame(bytes([3, 0]))


def _bus(profile: str) -> ModbusBusConfig:
    return ModbusBusConfig.model_validate(
        {
            "name": "fuzz-bus",
            "transport": "rtu",
            "port": "socket://127.0.0.1:9",  # never dialled: the line above replaces the connection
            "request_timeout_ms": 10,
            "retries_max": 0,
            "devices": [{"name": "th-7", "device_id": DEVICE_ID, "profile": profile, "read_point": "rp"}],
        }
    )


async def _exchange(profile_name: str, chunks: Sequence[bytes]) -> tuple[DevicePoller, list[Any]]:
    config = _bus(profile_name)
    link = ModbusLink(config, client_factory=_client_answering(chunks))
    poller = DevicePoller(config, config.devices[0], PROFILES[profile_name], rng=random.Random(1), clock=_FixedClock())
    await link.open()
    try:
        outcome = await poller.exchange(link, 0.0)
    finally:
        link.close()
    return poller, list(outcome.outputs)


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[str, bytes, list[bytes]]:
    profile_name = draw(st.sampled_from(sorted(PROFILES)))
    block = PROFILES[profile_name].blocks[0]
    response = draw(responses(block.function_code, block.count))
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=len(response)), max_size=3)))
    bounds = [0, *cuts, len(response)]
    chunks = [response[lo:hi] for lo, hi in itertools.pairwise(bounds) if hi > lo]
    return profile_name, response, chunks


@fuzz
@given(case=exchanges())
# The largest float32 in a real frame: it crashed the codec before the fix described above.
@example(case=("kincony-sht30-float", LARGEST_FLOAT32_FRAME, [LARGEST_FLOAT32_FRAME]))
# Found by this fuzzer: a well-formed response with no registers was quarantined with no raw bytes at all.
@example(case=("generic-example", NO_REGISTERS_FRAME, [NO_REGISTERS_FRAME[:3], NO_REGISTERS_FRAME[3:]]))
def test_fuzz_rtu_response_bytes_become_readings_or_faults(case: tuple[str, bytes, list[bytes]]) -> None:
    profile_name, response, chunks = case
    poller, outputs = asyncio.run(_exchange(profile_name, chunks))
    for output in outputs:
        event(output.reason_code if isinstance(output, ModbusFault) else "reading")
    for output in outputs:
        if isinstance(output, ModbusFault):
            assert output.reason.strip() and output.raw and output.device == "th-7"
        else:
            assert isinstance(output, SensorReading)
            assert math.isfinite(output.value) and output.device_id == "th-7"
    if not outputs:
        # Silence is the one input with nothing to quarantine; it counts as no response.
        assert response == b"" and poller.status.no_response_total == 1
    if poller.status.garbled_total or poller.status.exception_responses_total:
        assert any(isinstance(output, ModbusFault) for output in outputs)


# -- profile files -----------------------------------------------------------------------------------------------

PROFILE_TEXTS = {name: (PROFILES_DIR / f"{name}.toml").read_text(encoding="utf-8") for name in PROFILES}
profile_leaves = st.sampled_from(
    [
        0,
        -1,
        3,
        4,
        5,
        65535,
        65536,
        2**64,
        1e308,
        math.nan,
        math.inf,
        -math.inf,
        0.0,
        "int16",
        "float32",
        "big",
        "middle",
        "Temperature",
        "P1",
        "CEL",
        "",
        [],
        {},
    ]
)


@st.composite
def profile_documents(draw: st.DrawFn) -> bytes:
    text = PROFILE_TEXTS[draw(st.sampled_from(sorted(PROFILE_TEXTS)))]
    if draw(st.booleans()):
        return draw(mutated_bytes(text.encode()))
    tree = draw(mutated_tree(tomllib.loads(text), profile_leaves | st.integers(), rounds_max=4))
    return to_toml(tree).encode()


@fuzz
@given(document=profile_documents())
def test_fuzz_profile_file_loads_or_is_refused_naming_the_file(document: bytes, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("profiles") / "fuzzed.toml"
    path.write_bytes(document)
    try:
        profile = load_profile(path)
        event("profile loaded")
    except ConfigError as exc:
        event("profile refused")
        assert str(exc).startswith(str(path)), str(exc)
        return
    assert profile.blocks and all(spec.width >= 1 for spec in profile.registers)
    # What the loader accepts, the codec can decode whatever the device sends.
    for spec in profile.registers:
        decode_register(spec, [0x7F7F, 0xFFFF][: spec.width])


def test_the_largest_float32_on_the_wire_is_a_value_not_a_crash() -> None:
    _, outputs = asyncio.run(_exchange("kincony-sht30-float", [LARGEST_FLOAT32_FRAME]))
    # Temperature 3.4e38 is far outside the profile's valid range: a fault with the frame; humidity 50 is read.
    assert [type(output).__name__ for output in outputs] == ["ModbusFault", "SensorReading"]
    assert isinstance(outputs[0], ModbusFault) and outputs[0].reason_code == "out_of_range"
    assert isinstance(outputs[1], SensorReading) and outputs[1].value == 50.0


def test_parse_profile_names_the_source_for_text_that_is_not_toml() -> None:
    with pytest.raises(ConfigError, match=r"^xy\.toml: not valid TOML"):
        parse_profile("[[register]\n", "xy", "xy.toml")
