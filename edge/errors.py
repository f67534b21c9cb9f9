"""The edge agent's error tree; library errors are translated into it at one boundary each.

EdgeError
├── ConfigError        a gateway config file is missing, unreadable or invalid (refuse to start)
├── DeviceError        a device is gone, unreachable or answered garbage (retry; the agent keeps running)
│   └── PortClosedError   the serial port vanished (USB re-enumeration, cable pulled)
├── OutboxError        the SQLite outbox failed (disk full, I/O error, corruption)
└── UplinkError        the gRPC stream to the cloud failed (reconnect with backoff)
    └── ProtocolError  the cloud answered out of contract
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error the edge agent raises on purpose."""


class ConfigError(EdgeError):
    """A config file is invalid; the message names the file, the key and what was expected."""


class DeviceError(EdgeError):
    """A device failed in a way the agent survives by retrying."""


class PortClosedError(DeviceError):
    """The serial port vanished or reported end of file."""


class OutboxError(EdgeError):
    """The outbox could not store, read or delete events."""


class OutboxFullError(OutboxError):
    """The outbox is at its byte cap and holds only movements: new events are refused, not dropped."""


class UplinkError(EdgeError):
    """The stream to the cloud broke."""


class ProtocolError(UplinkError):
    """The cloud answered something the contract does not allow."""
