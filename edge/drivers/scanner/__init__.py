"""Serial barcode scanner driver: frames a scanner's byte stream and decodes GS1 barcodes from it.

Config table ``[[scanner]]`` (see ``sample.toml``); ``ScannerDriver`` yields ``Frame``s, ``decode_frame``
turns each into a ``ScanDecoded`` or a ``ScanRejected`` for the quarantine.
"""

from edge.drivers.scanner.config import ScannerConfig
from edge.drivers.scanner.decode import (
    DecodeOptions,
    RejectCode,
    ScanDecoded,
    ScanRejected,
    clean_text,
    decode_frame,
    decode_scan,
)
from edge.drivers.scanner.driver import ACK, NAK, ScannerDriver, SerialOpener
from edge.drivers.scanner.framing import Frame, FramingMode, ScanFramer
from edge.drivers.scanner.gs1 import digital_link_gtin_serial, digital_link_sscc, gs1_check_digit

__all__ = [
    "ACK",
    "NAK",
    "DecodeOptions",
    "Frame",
    "FramingMode",
    "RejectCode",
    "ScanDecoded",
    "ScanFramer",
    "ScanRejected",
    "ScannerConfig",
    "ScannerDriver",
    "SerialOpener",
    "clean_text",
    "decode_frame",
    "decode_scan",
    "digital_link_gtin_serial",
    "digital_link_sscc",
    "gs1_check_digit",
]
