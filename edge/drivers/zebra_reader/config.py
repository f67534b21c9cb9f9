"""Configuration of one Zebra fixed RFID reader on the IoT Connector's MQTT endpoint: the ``[[zebra_reader]]`` table.

Every option, its unit and its default is documented in ``sample.toml`` next to this module.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from edge.drivers.mqtt_subscription import MqttConnectionConfig, validate_topic_filter

__all__ = ["ZebraReaderConfig"]


class ZebraReaderConfig(MqttConnectionConfig):
    """One Zebra FX7500 / FX9600 / ATR7000 / FXR90 publishing tag data and GPI events to an MQTT broker."""

    name: str = Field(min_length=1, description="Device id used in reads, events and logs, e.g. 'dock4-reader'.")
    broker_host: str = Field(min_length=1)
    tag_topic: str = Field(min_length=1, description="Topic of the IoT Connector's tag data endpoint.")
    event_topic: str | None = Field(default=None, min_length=1, description="Topic of GPI / management events.")
    client_id: str = Field(min_length=1, max_length=128)

    @field_validator("tag_topic", "event_topic")
    @classmethod
    def _check_topic(cls, topic: str | None) -> str | None:
        return None if topic is None else validate_topic_filter(topic)

    @model_validator(mode="after")
    def _check_topics_differ(self) -> Self:
        if self.event_topic == self.tag_topic:
            raise ValueError("event_topic must differ from tag_topic (or be left out)")
        return self

    @property
    def topics(self) -> tuple[str, ...]:
        """The topics to subscribe to."""
        return (self.tag_topic,) if self.event_topic is None else (self.tag_topic, self.event_topic)
