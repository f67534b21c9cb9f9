"""A scripted sensor bus: a TOML scenario (sensors, ramps, steps, faults) run on ``SensorBusSimulator``.

    await run_from_config(Path("hw_sim/modbus/sample-bus.toml"))          # until cancelled

Every ``update_interval_ms`` the run applies each sensor's ramps and the steps whose time has come (a step
sets a value, a ramp or a fault at ``at_ms`` after the start), and writes the registers. See
``sample-bus.toml`` for every key.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tomllib
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hw_sim.modbus.registers import SensorModel
from hw_sim.modbus.simulator import SLOW_MS_MAX, Fault, SensorBusSimulator, SimulatedSensor, Transport

__all__ = ["BusScenario", "ScenarioRun", "load_scenario", "run_from_config"]

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BusSection(_Strict):
    transport: Transport = "rtu"
    host: str = "127.0.0.1"
    port: int = Field(5021, ge=0, le=65535, description="0 = any free port (logged at start)")
    link: Path | None = Field(None, description="pty only: the symlink the gateway opens as its serial port")
    baudrate: int | None = Field(None, ge=300, le=1_000_000, description="pty only: pace bytes like this line")
    update_interval_ms: int = Field(1000, ge=10, le=600_000)
    duration_ms: int = Field(0, ge=0, description="stop after this long; 0 = run until cancelled")
    seed: int = 1


class StepSection(_Strict):
    at_ms: int = Field(ge=0, description="time after the start")
    temperature_cel: float | None = None
    humidity_percent: float | None = None
    temperature_ramp_cel_per_min: float | None = None
    humidity_ramp_percent_per_min: float | None = None
    fault: Fault | None = None
    slow_ms: int | None = Field(None, ge=0, le=SLOW_MS_MAX)


class SensorSection(_Strict):
    device_id: int = Field(ge=1, le=247)
    model: SensorModel
    temperature_cel: float = 20.0
    humidity_percent: float = Field(50.0, ge=0, le=100)
    temperature_ramp_cel_per_min: float = 0.0
    humidity_ramp_percent_per_min: float = 0.0
    fault: Fault = "none"
    slow_ms: int = Field(0, ge=0, le=SLOW_MS_MAX)
    step: list[StepSection] = Field(default_factory=list)


class BusScenario(_Strict):
    bus: BusSection = BusSection()
    sensor: list[SensorSection] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        if self.bus.transport == "pty" and self.bus.link is None:
            raise ValueError("bus.link: transport = 'pty' needs the symlink path the gateway opens")
        ids = [sensor.device_id for sensor in self.sensor]
        repeated = sorted({device_id for device_id in ids if ids.count(device_id) > 1})
        if repeated:
            raise ValueError(f"sensor device_id must be unique on a bus, repeated: {repeated}")
        return self


def load_scenario(path: Path) -> BusScenario:
    try:
        return BusScenario.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


class ScenarioRun:
    """Drives a ``SensorBusSimulator`` through a scenario; time is the event loop's."""

    def __init__(self, scenario: BusScenario) -> None:
        self.scenario = scenario
        bus = scenario.bus
        sensors = [
            SimulatedSensor(s.device_id, s.model, s.temperature_cel, s.humidity_percent, s.fault, s.slow_ms)
            for s in scenario.sensor
        ]
        self.simulator = SensorBusSimulator(
            sensors,
            transport=bus.transport,
            host=bus.host,
            port=bus.port,
            link=bus.link,
            baudrate=bus.baudrate,
            rng=random.Random(bus.seed),
        )
        self._ramps = {
            s.device_id: (s.temperature_ramp_cel_per_min, s.humidity_ramp_percent_per_min) for s in scenario.sensor
        }
        self._pending = {s.device_id: sorted(s.step, key=lambda step: step.at_ms) for s in scenario.sensor}

    async def run(self) -> None:
        """Start the bus and script it until cancelled or ``duration_ms`` has passed; stops the bus at the end."""
        loop = asyncio.get_running_loop()
        await self.simulator.start()
        started = last = loop.time()
        interval_s = self.scenario.bus.update_interval_ms / 1000
        duration_ms = self.scenario.bus.duration_ms
        try:
            while duration_ms == 0 or (loop.time() - started) * 1000 < duration_ms:
                await asyncio.sleep(interval_s)
                now = loop.time()
                await self.update(elapsed_ms=(now - started) * 1000, step_s=now - last)
                last = now
        finally:
            await self.simulator.stop()

    async def update(self, *, elapsed_ms: float, step_s: float) -> None:
        """Apply due steps, then ramps over ``step_s`` seconds."""
        for device_id, steps in self._pending.items():
            sensor = self.simulator.sensor(device_id)
            while steps and steps[0].at_ms <= elapsed_ms:
                self._apply_step(device_id, steps.pop(0))
            temperature_ramp, humidity_ramp = self._ramps[device_id]
            temperature = sensor.temperature_cel + temperature_ramp * step_s / 60
            humidity = min(100.0, max(0.0, sensor.humidity_percent + humidity_ramp * step_s / 60))
            await self.simulator.set_value(device_id, temperature_cel=temperature, humidity_percent=humidity)

    def _apply_step(self, device_id: int, step: StepSection) -> None:
        sensor = self.simulator.sensor(device_id)
        if step.temperature_cel is not None:
            sensor.temperature_cel = step.temperature_cel
        if step.humidity_percent is not None:
            sensor.humidity_percent = step.humidity_percent
        temperature_ramp, humidity_ramp = self._ramps[device_id]
        self._ramps[device_id] = (
            temperature_ramp if step.temperature_ramp_cel_per_min is None else step.temperature_ramp_cel_per_min,
            humidity_ramp if step.humidity_ramp_percent_per_min is None else step.humidity_ramp_percent_per_min,
        )
        if step.fault is not None or step.slow_ms is not None:
            self.simulator.set_fault(device_id, step.fault or sensor.fault, slow_ms=step.slow_ms)
        log.info("modbus sensor %d: step at %d ms", device_id, step.at_ms, extra={"device_id": device_id})


async def run_from_config(path: Path) -> None:
    """Entry point for ``tallyport-sim modbus``: load the scenario and run it (until cancelled)."""
    await ScenarioRun(load_scenario(path)).run()
