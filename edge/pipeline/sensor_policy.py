"""`[sensor_policy]`: when a climate reading is worth an event (see sensor_events.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SensorPolicy(BaseModel):
    """`[sensor_policy]`: when a reading is worth an event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature_deadband_cel: float = Field(0.2, ge=0)
    humidity_deadband_percent: float = Field(1.0, ge=0)
    interval_ms_min: int = Field(10_000, ge=0, description="no two events of one measurement closer than this")
    interval_ms_max: int = Field(300_000, ge=1000, description="an event at least this often (heartbeat)")

    def deadband(self, measurement: str) -> float:
        return self.temperature_deadband_cel if measurement == "Temperature" else self.humidity_deadband_percent
