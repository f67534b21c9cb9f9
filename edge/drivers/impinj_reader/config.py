"""Configuration of one Impinj R700/R720 on its IoT Device Interface: the ``[[impinj_reader]]`` table.

Two ways in: ``mode = "mqtt"`` (the reader publishes each event to a broker; at least once, acknowledged after
commit) or ``mode = "http_stream"`` (the agent holds ``GET /api/v1/data/stream`` open and reads NDJSON; the
stream has no acknowledgement, so what is in flight when the gateway dies is lost). Every option, its unit
and its default is documented in ``sample.toml`` next to this module.
"""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from edge.drivers.mqtt_subscription import MqttConnectionConfig, validate_topic_filter

__all__ = ["IMPINJ_KEEPALIVE_MS", "ImpinjReaderConfig"]

# Impinj OpenAPI: with nothing to stream for 30 s the reader sends a CR-LF keep-alive every 30 s.
IMPINJ_KEEPALIVE_MS = 30_000


class ImpinjReaderConfig(MqttConnectionConfig):
    """One Impinj reader. The MQTT options apply in ``mqtt`` mode; ``username``/``password`` authenticate to the
    broker there and to the reader (HTTP basic auth) in ``http_stream`` mode."""

    name: str = Field(min_length=1, description="Device id used in reads, events and logs, e.g. 'dock2-r700'.")
    mode: Literal["mqtt", "http_stream"]
    # mqtt mode
    broker_host: str | None = Field(default=None, min_length=1)
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    topic: str | None = Field(default=None, min_length=1)
    # http_stream mode
    stream_url: str | None = Field(default=None, min_length=1)
    read_timeout_ms: int = Field(default=45_000, ge=100, le=600_000)
    stream_keepalive_ms: int = Field(default=IMPINJ_KEEPALIVE_MS, ge=10, le=600_000)
    tls_verify: bool = True
    tls_ca_file: str | None = Field(default=None, min_length=1)

    @field_validator("topic")
    @classmethod
    def _check_topic(cls, topic: str | None) -> str | None:
        return None if topic is None else validate_topic_filter(topic)

    @field_validator("stream_url")
    @classmethod
    def _check_stream_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"stream_url {url!r} must be an http:// or https:// URL with a host")
        return url

    @model_validator(mode="after")
    def _check_mode(self) -> Self:
        mqtt_fields = {"broker_host": self.broker_host, "client_id": self.client_id, "topic": self.topic}
        if self.mode == "mqtt":
            missing = [name for name, value in mqtt_fields.items() if value is None]
            if missing:
                raise ValueError(f"mode 'mqtt' needs {', '.join(missing)}")
            if self.stream_url is not None:
                raise ValueError("stream_url is for mode 'http_stream'")
        else:
            if self.stream_url is None:
                raise ValueError("mode 'http_stream' needs stream_url")
            given = [name for name, value in mqtt_fields.items() if value is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: for mode 'mqtt' only")
            # A read timeout at or under the keep-alive period would call a healthy, idle stream dead.
            if self.read_timeout_ms <= self.stream_keepalive_ms:
                raise ValueError(
                    f"read_timeout_ms ({self.read_timeout_ms}) must exceed the reader's keep-alive period "
                    f"stream_keepalive_ms ({self.stream_keepalive_ms})"
                )
        return self


# The default must leave the keep-alive period room, or every idle stream would be reopened.
assert ImpinjReaderConfig.model_fields["read_timeout_ms"].default > IMPINJ_KEEPALIVE_MS
