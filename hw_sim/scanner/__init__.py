"""A simulated serial barcode scanner on a real pseudo-terminal."""

from hw_sim.scanner.pty_port import PtyPort
from hw_sim.scanner.scenario import ScannerScenario, load_scenario
from hw_sim.scanner.simulator import ScannerSimulator

__all__ = ["PtyPort", "ScannerScenario", "ScannerSimulator", "load_scenario"]
