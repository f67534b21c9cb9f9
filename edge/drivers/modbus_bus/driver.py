"""One asyncio task owns one Modbus bus: one client, one request in flight, every device on a rotating schedule.

    profiles = load_profiles_for_bus(bus_config)
    bus = ModbusBus(bus_config, profiles, rng=random.Random(seed), clock=SystemClock())
    output: asyncio.Queue[BusOutput] = asyncio.Queue(maxsize=256)
    supervisor.add(f"modbus_bus:{bus_config.name}", lambda: bus.run(output))
    ...
    item = await output.get()      # a SensorReading, or a ModbusFault for the quarantine

RS-485 is half duplex and has one master: two requests on the line at once collide, and a late answer from
one device can be taken for another's. So the bus is a single task with a single pymodbus client that asks
one device at a time, leaves the silent interval (t3.5) between exchanges, and polls the devices in a
rotating schedule (``scheduler.py``) with a seeded phase offset.

Each device has its own ``DevicePoller`` (one poller per device): its own retry count, its own backoff
when it stops answering, its own availability, logged once per change (a warning when it goes silent, info
when it is back), never once per failed poll. A dead, garbling or slow device costs the others at most one
request timeout per attempt, because its retries go to the back of the queue. When the port or connection
goes away the bus closes it and reopens it with jittered, capped backoff; the devices keep their schedule.

What comes out, on the bounded queue passed to ``run``:

* ``SensorReading`` (``edge.pipeline.reads``): ``device_id`` is the device's config name, ``seen_at`` the
  clock's aware UTC time when the response arrived, ``raw_sha256`` the digest of the response's register
  bytes (every reading from one response shares it);
* ``ModbusFault``: bad input to quarantine, with its raw bytes: a garbled response (CRC error, noise), an
  exception response, or a value the profile rejects (NaN, out of range). A device that is simply silent
  produces no fault (there is nothing to quarantine); its availability and counters say so. A fault that
  repeats poll after poll is one episode (``faults.py``): one fault when it starts, its repeats counted,
  and a ``fault_repeats`` summary when it clears (and every ``fault_summary_interval_ms`` while it lasts).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.backoff import Backoff
from edge.clock import Clock
from edge.drivers.modbus_bus.codec import DecodedValue, ValueFault, decode_registers
from edge.drivers.modbus_bus.config import ModbusBusConfig, ModbusDeviceConfig
from edge.drivers.modbus_bus.faults import FaultCode, FaultEpisodes, ModbusFault, block_subject
from edge.drivers.modbus_bus.link import (
    ClientFactory,
    ModbusExceptionResponseError,
    ModbusGarbledResponseError,
    ModbusLink,
    ModbusNoResponseError,
    RegisterResponse,
    make_client,
)
from edge.drivers.modbus_bus.profiles import DeviceProfile
from edge.drivers.modbus_bus.scheduler import PollScheduler, next_cycle_due_s
from edge.errors import DeviceError, PortClosedError
from edge.pipeline.reads import SensorReading

__all__ = [
    "OUTPUT_PUT_TIMEOUT_MS",
    "BusOutput",
    "BusStatus",
    "DevicePoller",
    "DeviceStatus",
    "FaultCode",
    "ModbusBus",
    "ModbusFault",
]

logger = logging.getLogger(__name__)

# A consumer that has not taken an item for this long is stuck; the item is dropped and counted rather than
# letting the bus stop polling (and the availability of every device go stale) behind it.
OUTPUT_PUT_TIMEOUT_MS = 5000
# Exception codes worth retrying: the device is alive but busy (acknowledge / server device busy).
_RETRYABLE_EXCEPTION_CODES = frozenset({5, 6})


BusOutput = SensorReading | ModbusFault


@dataclass(slots=True)
class DeviceStatus:
    """A device's availability and counters, for health reporting."""

    name: str
    device_id: int
    available: bool | None = None
    """True when its last poll succeeded; None before the first poll ended."""
    last_error: str = ""
    polls_total: int = 0
    """Requests sent to the device, every attempt counted; ``polls_total - retries_total`` is poll cycles."""
    readings_total: int = 0
    faults_total: int = 0
    """Faults seen, repeats included; ``faults_total - fault_repeats_total`` of them became a ModbusFault."""
    fault_repeats_total: int = 0
    """Faults counted into an open fault episode instead of being output (see ``faults.py``)."""
    no_response_total: int = 0
    garbled_total: int = 0
    exception_responses_total: int = 0
    retries_total: int = 0


@dataclass(slots=True)
class BusStatus:
    name: str
    endpoint: str
    available: bool | None = None
    """True while the port or connection is open; None before the first open attempt."""
    last_error: str = ""
    reopens_total: int = 0
    """Successful reopens after the port or connection was lost."""
    exchanges_total: int = 0
    outputs_dropped_total: int = 0
    devices: dict[str, DeviceStatus] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExchangeOutcome:
    """What one exchange produced and when the device wants the bus next."""

    outputs: tuple[BusOutput, ...]
    next_due_s: float


class DevicePoller:
    """One device on the bus: its request blocks, retries, backoff and availability.

    ``exchange()`` does one request (one block, one attempt) and says when the device is due next. A
    device's poll cycle is one exchange per block of its profile (usually one); a failed block is retried up
    to ``retries_max`` times, each retry queued behind the devices that are due.
    """

    def __init__(
        self,
        bus: ModbusBusConfig,
        device: ModbusDeviceConfig,
        profile: DeviceProfile,
        *,
        rng: random.Random,
        clock: Clock,
    ) -> None:
        assert profile.blocks, f"profile {profile.name} has no registers"
        self.config = device
        self.profile = profile
        self._bus = bus
        self._clock = clock
        self._interval_s = device.poll_interval_ms / 1000
        self._backoff = Backoff(
            delay_ms_initial=device.poll_interval_ms,
            delay_ms_max=max(device.poll_interval_ms, bus.offline_poll_delay_ms_max),
            rng=rng,
        )
        self._block_index = 0
        self._attempt = 0
        self._cycle_due_s: float | None = None
        self._episodes = FaultEpisodes(bus.name, device.name, summary_interval_ms=bus.fault_summary_interval_ms)
        self.status = DeviceStatus(device.name, device.device_id)

    async def exchange(self, link: ModbusLink, due_s: float) -> ExchangeOutcome:
        """Ask the device for its current block once. PortClosedError escapes: the bus, not the device, failed."""
        if self._cycle_due_s is None:
            self._cycle_due_s = due_s
        block = self.profile.blocks[self._block_index]
        try:
            response = await link.read_registers(
                device_id=self.config.device_id,
                function_code=block.function_code,
                address=block.address,
                count=block.count,
            )
        except PortClosedError:
            raise
        except DeviceError as error:
            return self._failed(error, _loop_time())
        return self._answered(response, block.function_code, block.address, _loop_time())

    def _answered(self, response: RegisterResponse, function_code: int, start: int, now_s: float) -> ExchangeOutcome:
        self.status.polls_total += 1
        seen_at = self._clock.now()
        raw_sha256 = hashlib.sha256(response.raw).hexdigest()
        # The block answered: whatever kept it from answering before (garbling, an exception) has cleared.
        outputs: list[BusOutput] = list(self._episodes.clear(block_subject(function_code, start), seen_at))
        for outcome in decode_registers(self.profile, function_code, start, response.registers):
            outputs.extend(self._output(outcome, response.raw, raw_sha256, seen_at))
        self.status.readings_total += sum(isinstance(output, SensorReading) for output in outputs)
        # The device communicates: it is available even when a value is rejected (that is the sensor
        # element's fault, and it is reported on its own as a ModbusFault).
        self._mark_available()
        return ExchangeOutcome(tuple(outputs), self._next_block_or_cycle(now_s))

    def _output(
        self, outcome: DecodedValue | ValueFault, raw: bytes, raw_sha256: str, seen_at: datetime
    ) -> list[BusOutput]:
        if isinstance(outcome, ValueFault):
            fault = ModbusFault(self._bus.name, self.config.name, outcome.reason_code, outcome.reason, raw, seen_at)
            return list(self._episode_fault(outcome.measurement, fault))
        reading = SensorReading(
            device_id=self.config.name,
            measurement=outcome.measurement,
            value=outcome.value,
            uom=outcome.uom,
            seen_at=seen_at,
            raw_sha256=raw_sha256,
        )
        return [*self._episodes.clear(outcome.measurement, seen_at), reading]

    def _episode_fault(self, subject: str, fault: ModbusFault) -> list[ModbusFault]:
        """Count the fault; the rows its episode wants quarantined (none for a repeat)."""
        self.status.faults_total += 1
        rows = self._episodes.fault(subject, fault)
        self.status.fault_repeats_total = self._episodes.repeats_total
        return rows

    def _failed(self, error: DeviceError, now_s: float) -> ExchangeOutcome:
        self.status.polls_total += 1
        self.status.last_error = str(error)
        retryable = True
        if isinstance(error, ModbusNoResponseError):
            self.status.no_response_total += 1
        elif isinstance(error, ModbusGarbledResponseError):
            self.status.garbled_total += 1
        elif isinstance(error, ModbusExceptionResponseError):
            self.status.exception_responses_total += 1
            # An exception (illegal address: the profile does not fit the device) repeats on every attempt.
            retryable = error.exception_code in _RETRYABLE_EXCEPTION_CODES
        if retryable and self._attempt < self._bus.retries_max:
            self._attempt += 1
            self.status.retries_total += 1
            return ExchangeOutcome((), now_s)
        outputs: tuple[BusOutput, ...] = ()
        fault = self._fault_of(error)
        if fault is not None:
            block = self.profile.blocks[self._block_index]
            outputs = tuple(self._episode_fault(block_subject(block.function_code, block.address), fault))
        self._mark_unavailable(error)
        # The rest of this cycle's blocks are skipped: the device just failed to answer.
        assert self._cycle_due_s is not None
        cycle_due_s, self._cycle_due_s = self._cycle_due_s, None
        self._block_index = 0
        self._attempt = 0
        next_due_s = next_cycle_due_s(cycle_due_s, self._interval_s, now_s) + self._offline_delay_s()
        return ExchangeOutcome(outputs, next_due_s)

    def _fault_of(self, error: DeviceError) -> ModbusFault | None:
        if isinstance(error, ModbusGarbledResponseError):
            return ModbusFault(self._bus.name, self.config.name, "garbled", str(error), error.raw, self._clock.now())
        if isinstance(error, ModbusExceptionResponseError):
            return ModbusFault(
                self._bus.name, self.config.name, "exception_response", str(error), error.raw, self._clock.now()
            )
        return None

    def _next_block_or_cycle(self, now_s: float) -> float:
        self._attempt = 0
        self._block_index += 1
        if self._block_index < len(self.profile.blocks):
            return now_s  # the rest of this cycle's blocks, behind whoever is due
        self._block_index = 0
        assert self._cycle_due_s is not None
        cycle_due_s, self._cycle_due_s = self._cycle_due_s, None
        return next_cycle_due_s(cycle_due_s, self._interval_s, now_s)

    def _offline_delay_s(self) -> float:
        # Full jitter from a tenth of the interval up to a ceiling that doubles per failed cycle: a dead
        # device's timeouts take less and less of the bus, and devices that died together drift apart.
        return self._backoff.next_delay_s()

    def _mark_available(self) -> None:
        previous, self.status.available = self.status.available, True
        self._backoff.reset()
        fields = self._log_fields(available=True)
        if previous is False:
            logger.info("modbus device %s: answering again", self.config.name, extra=fields)
        elif previous is None:
            logger.debug("modbus device %s: answering", self.config.name, extra=fields)

    def _mark_unavailable(self, error: DeviceError) -> None:
        previous, self.status.available = self.status.available, False
        fields = self._log_fields(available=False, error=str(error), error_kind=type(error).__name__)
        if previous is False:
            logger.debug("modbus device %s: still no valid answer: %s", self.config.name, error, extra=fields)
        else:
            logger.warning(
                "modbus device %s: no valid answer, polling with backoff: %s", self.config.name, error, extra=fields
            )

    def _log_fields(self, **fields: Any) -> dict[str, Any]:
        return {"bus": self._bus.name, "device": self.config.name, "device_id": self.config.device_id, **fields}


class ModbusBus:
    """The owner of one bus; ``run(output)`` polls until cancelled. See the module docstring."""

    def __init__(
        self,
        config: ModbusBusConfig,
        profiles: Mapping[str, DeviceProfile],
        *,
        rng: random.Random,
        clock: Clock,
        client_factory: ClientFactory = make_client,
    ) -> None:
        missing = sorted({device.profile for device in config.devices} - set(profiles))
        if missing:
            raise ValueError(f"modbus bus {config.name}: no profile loaded for {', '.join(missing)}")
        self._config = config
        self._rng = rng
        self._link = ModbusLink(config, client_factory=client_factory)
        self._pollers = [
            DevicePoller(config, device, profiles[device.profile], rng=rng, clock=clock) for device in config.devices
        ]
        self._reopen_backoff = Backoff(
            delay_ms_initial=config.reconnect_delay_ms_initial, delay_ms_max=config.reconnect_delay_ms_max, rng=rng
        )
        self._gap_s = config.inter_request_gap_ms_effective / 1000
        self._scheduler: PollScheduler | None = None
        self._bus_free_at_s = 0.0
        self._running = False
        self._dropping = False
        self._link_lost: DeviceError | None = None
        self._status = BusStatus(config.name, config.endpoint)
        for poller in self._pollers:
            self._status.devices[poller.config.name] = poller.status

    @property
    def status(self) -> BusStatus:
        """Live status of the bus and its devices (the objects update as the bus runs)."""
        return self._status

    async def run(self, output: asyncio.Queue[BusOutput]) -> None:
        """Poll every device until cancelled, putting readings and faults on ``output`` (bounded).

        Device and port faults never escape; cancelling closes the port. May be called again after it
        ended (the supervisor restarts crashed tasks); the devices keep their state and schedule.
        """
        assert output.maxsize > 0, "the output queue must be bounded"
        if self._running:
            raise RuntimeError(f"modbus bus {self._config.name}: run() is already running")
        self._running = True
        try:
            if self._scheduler is None:
                intervals_ms = [poller.config.poll_interval_ms for poller in self._pollers]
                self._scheduler = PollScheduler(intervals_ms, now_s=_loop_time(), rng=self._rng)
            while True:
                await self._ensure_open()
                await self._exchange_next(self._scheduler, output)
        finally:
            self._link.close()
            self._running = False

    async def _exchange_next(self, scheduler: PollScheduler, output: asyncio.Queue[BusOutput]) -> None:
        index, due_s = scheduler.take()
        poller = self._pollers[index]
        next_due_s = due_s
        try:
            # The wait for the due time and the silent interval: bounded by the poll interval, since the
            # earliest due time is at most one interval (plus the offline backoff) ahead.
            delay_s = max(due_s, self._bus_free_at_s) - _loop_time()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            try:
                outcome = await poller.exchange(self._link, due_s)
            except PortClosedError as error:
                self._lose_link(error)
                return  # the device is asked again, as soon as the bus is back
            finally:
                self._status.exchanges_total += 1
                self._bus_free_at_s = _loop_time() + self._gap_s
            next_due_s = outcome.next_due_s
            for item in outcome.outputs:
                await self._emit(output, item)
        finally:
            scheduler.give_back(index, next_due_s)

    async def _emit(self, output: asyncio.Queue[BusOutput], item: BusOutput) -> None:
        try:
            async with asyncio.timeout(OUTPUT_PUT_TIMEOUT_MS / 1000):
                await output.put(item)
        except TimeoutError:
            self._status.outputs_dropped_total += 1
            if not self._dropping:
                logger.warning(
                    "modbus bus %s: output queue full for %d ms, dropping readings until it drains",
                    self._config.name,
                    OUTPUT_PUT_TIMEOUT_MS,
                    extra=self._log_fields(outputs_dropped_total=self._status.outputs_dropped_total),
                )
            self._dropping = True
            return
        if self._dropping:
            self._dropping = False
            logger.info(
                "modbus bus %s: output queue draining again",
                self._config.name,
                extra=self._log_fields(outputs_dropped_total=self._status.outputs_dropped_total),
            )

    async def _ensure_open(self) -> None:
        if not self._link.is_open and self._status.available:
            # The connection dropped (pymodbus closes a Modbus TCP connection after many unanswered
            # requests; a peer may close an idle one): one immediate reopen before the bus counts as down,
            # so that a bus whose sensors are all dead does not log a flap every few polls.
            lost = self._link_lost or PortClosedError(f"{self._config.endpoint}: connection closed")
            self._link_lost = None
            try:
                await self._link.open()
            except DeviceError:
                self._mark_unavailable(lost)
            else:
                self._status.reopens_total += 1
                logger.debug(
                    "modbus bus %s: reopened at once after: %s", self._config.name, lost, extra=self._log_fields()
                )
                return
        while not self._link.is_open:
            if self._status.available is not None:  # a failed attempt or a lost link: back off first
                await asyncio.sleep(self._reopen_backoff.next_delay_s())
            try:
                await self._link.open()
            except DeviceError as error:
                self._mark_unavailable(error)
                continue
            self._mark_available()

    def _lose_link(self, error: DeviceError) -> None:
        self._link.close()
        self._status.last_error = str(error)
        self._link_lost = error

    def _mark_available(self) -> None:
        previous, self._status.available = self._status.available, True
        self._reopen_backoff.reset()
        fields = self._log_fields(available=True)
        if previous is False:
            self._status.reopens_total += 1
            logger.info("modbus bus %s: %s open again", self._config.name, self._config.endpoint, extra=fields)
        else:
            logger.info("modbus bus %s: %s open", self._config.name, self._config.endpoint, extra=fields)

    def _mark_unavailable(self, error: DeviceError) -> None:
        previous, self._status.available = self._status.available, False
        self._status.last_error = str(error)
        fields = self._log_fields(available=False, error=str(error), error_kind=type(error).__name__)
        if previous is False:
            logger.debug("modbus bus %s: still unavailable: %s", self._config.name, error, extra=fields)
        else:
            logger.warning(
                "modbus bus %s: unavailable, reopening with backoff: %s", self._config.name, error, extra=fields
            )

    def _log_fields(self, **fields: Any) -> dict[str, Any]:
        return {"bus": self._config.name, "endpoint": self._config.endpoint, **fields}


def _loop_time() -> float:
    # The event loop's monotonic clock: schedules must not jump when the wall clock is stepped (NTP).
    return asyncio.get_running_loop().time()
