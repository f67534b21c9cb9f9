"""Logging for the aggregator: stdlib `logging`, one line per record, structured fields last.

    2025-01-31T12:00:00.123Z INFO cloud.ingest gateway connected gateway_id=gw-dock4 outbox_id=ob-1

Fields come from `extra={...}`; values with spaces or quotes are quoted. INFO covers start and
stop, gateway connect/disconnect and gaps; DEBUG adds one line per batch.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

__all__ = ["KeyValueFormatter", "configure_logging"]

# Every attribute a bare LogRecord carries; anything else on a record came from `extra`.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class KeyValueFormatter(logging.Formatter):
    """`ts level logger message key=value ...`, timestamps in UTC with milliseconds."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [f"{stamp}.{int(record.msecs):03d}Z", record.levelname, record.name, record.getMessage()]
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                parts.append(f"{key}={_quote(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _quote(value: object) -> str:
    text = str(value)
    if text == "" or any(char in text for char in ' "=\n\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send the `cloud` loggers to `stream` (stderr by default) at `level`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("cloud")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
