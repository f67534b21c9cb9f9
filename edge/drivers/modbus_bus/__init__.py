"""Modbus sensor buses: RS-485 lines (Modbus RTU) and Modbus TCP endpoints with climate sensors on them.

Config table ``[[modbus_bus]]`` (see ``sample.toml``); register maps are device profiles in
``firmware_config/modbus_profiles/`` (``load_profiles_for_bus``). ``ModbusBus.run(queue)`` is the one task
that owns a bus and puts ``SensorReading``s and ``ModbusFault``s on a bounded queue; ``decode_registers``
is the pure codec behind it.
"""

from edge.drivers.modbus_bus.codec import DecodedValue, ValueFault, decode_register, decode_registers
from edge.drivers.modbus_bus.config import ModbusBusConfig, ModbusDeviceConfig, silent_interval_ms
from edge.drivers.modbus_bus.driver import BusOutput, BusStatus, DeviceStatus, ModbusBus, ModbusFault
from edge.drivers.modbus_bus.link import (
    ClientFactory,
    ModbusExceptionResponseError,
    ModbusGarbledResponseError,
    ModbusNoResponseError,
    make_client,
)
from edge.drivers.modbus_bus.profiles import (
    PROFILES_DIR_DEFAULT,
    DeviceProfile,
    RegisterBlock,
    RegisterSpec,
    load_profile,
    load_profiles_for_bus,
    parse_profile,
)

__all__ = [
    "PROFILES_DIR_DEFAULT",
    "BusOutput",
    "BusStatus",
    "ClientFactory",
    "DecodedValue",
    "DeviceProfile",
    "DeviceStatus",
    "ModbusBus",
    "ModbusBusConfig",
    "ModbusDeviceConfig",
    "ModbusExceptionResponseError",
    "ModbusFault",
    "ModbusGarbledResponseError",
    "ModbusNoResponseError",
    "RegisterBlock",
    "RegisterSpec",
    "ValueFault",
    "decode_register",
    "decode_registers",
    "load_profile",
    "load_profiles_for_bus",
    "make_client",
    "parse_profile",
    "silent_interval_ms",
]
