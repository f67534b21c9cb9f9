"""Simulated MQTT climate sensors (temperature and relative humidity) publishing scripted JSON readings."""

from hw_sim.mqtt_sensors.publisher import ClimateSample, ClimateSensorPublisher, climate_payload

__all__ = ["ClimateSample", "ClimateSensorPublisher", "climate_payload"]
