"""Satellite: sensors (I2C temperature/humidity/pressure drivers, simulation, ARP scan)."""

from sensors.base import Reading, Sensor, SensorError
from sensors.bme280 import BME280
from sensors.mcp9808 import MCP9808
from sensors.network import (
    NetworkEntry,
    ScanSpec,
    parse_arp,
    parse_scan_spec,
    scan,
    scan_arp,
)
from sensors.simulated import SimulatedSensor
from sensors.spec import SensorSpec, open_sensor, parse_sensor_spec
from sensors.tmp102 import TMP102

__all__ = [
    "BME280",
    "MCP9808",
    "TMP102",
    "NetworkEntry",
    "Reading",
    "ScanSpec",
    "Sensor",
    "SensorError",
    "SensorSpec",
    "SimulatedSensor",
    "open_sensor",
    "parse_arp",
    "parse_scan_spec",
    "parse_sensor_spec",
    "scan",
    "scan_arp",
]
