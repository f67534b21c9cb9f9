"""Simulated Modbus climate sensors on pymodbus's real servers: RTU over ``socket://`` or a pty, or Modbus TCP.

``SensorBusSimulator`` puts several sensors (XY-MD02 and KinCony SHT30 register maps) behind one server,
with values set at run time and faults per device (absent, garbling, slow, exception); ``run_from_config``
runs a scripted scenario such as ``sample-bus.toml`` (ramps, steps, faults over time).
"""

from hw_sim.modbus.pty_link import PtyNullModem
from hw_sim.modbus.registers import MODELS, SensorModel, holding_registers, input_registers
from hw_sim.modbus.scenario import BusScenario, ScenarioRun, load_scenario, run_from_config
from hw_sim.modbus.simulator import Fault, SensorBusSimulator, SimulatedSensor, Transport

__all__ = [
    "MODELS",
    "BusScenario",
    "Fault",
    "PtyNullModem",
    "ScenarioRun",
    "SensorBusSimulator",
    "SensorModel",
    "SimulatedSensor",
    "Transport",
    "holding_registers",
    "input_registers",
    "load_scenario",
    "run_from_config",
]
