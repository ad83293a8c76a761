"""The sensor reader: reads the node's sensor every interval and hands it to State.

A failing bus is logged and counted and retried with backoff (doubling up to a minute);
it never takes the node down: the reader does not crash on a sensor error.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from loguru import logger
from thespian.actors import WakeupMessage

from actors.base import SatelliteActor
from actors.overlay import Answer, Query
from sensors import SensorError, open_sensor, parse_scan_spec, scan

MAX_BACKOFF = 60.0


class NewReading:
    def __init__(
        self, temperature: float | None, humidity: float | None, pressure: float | None
    ) -> None:
        self.temperature, self.humidity, self.pressure = temperature, humidity, pressure


class SensorReader(SatelliteActor):
    def init(self, args: dict) -> None:
        self.interval = float(args["interval"])
        self.errors = 0
        self.readings = 0
        self.failing = 0  # consecutive failures, for the backoff
        self.spec = args["sensor"]
        self.sensor = None
        self.wakeupAfter(timedelta(seconds=0), "read")

    def failed(self, exc: Exception) -> None:
        self.errors += 1
        self.failing += 1
        delay = min(MAX_BACKOFF, self.interval * 2 ** (self.failing - 1))
        logger.warning(
            "[{}] sensor: {} (error {}); next try in {:.0f} s",
            self.node_id,
            exc,
            self.errors,
            delay,
        )
        self.wakeupAfter(timedelta(seconds=delay), "read")

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Query):
            counters = {"sensor_readings": self.readings, "sensor_read_errors": self.errors}
            self.send(sender, Answer(msg.what, msg.token, {"counters": counters}))
            return
        if not (isinstance(msg, WakeupMessage) and msg.payload == "read"):
            return
        try:
            if self.sensor is None:
                self.sensor = open_sensor(self.spec)
                if self.sensor is None:
                    return  # --sensor none
            reading = self.sensor.read()
        except SensorError as exc:
            self.failed(exc)
            return
        self.failing = 0
        self.readings += 1
        state = self.context.get("state")
        if state is not None:
            self.send(state, NewReading(reading.temperature, reading.humidity, reading.pressure))
        self.wakeupAfter(timedelta(seconds=self.interval), "read")


class DevicesSeen:
    """From the network scanner to State: MAC -> IP of the devices in the ARP table."""

    def __init__(self, devices: dict) -> None:
        self.devices = devices


class NetworkScanner(SatelliteActor):
    """Reads the ARP table every interval (who is in the office, by their devices)."""

    def init(self, args: dict) -> None:
        self.spec = parse_scan_spec(args["scan"])
        self.interval = float(args["interval"])
        self.errors = 0
        self.scans = 0
        if self.spec.kind != "none":
            self.wakeupAfter(timedelta(seconds=0), "scan")

    def handle(self, msg: Any, sender: Any) -> None:
        if isinstance(msg, Query):
            counters = {"network_scans": self.scans, "network_scan_errors": self.errors}
            self.send(sender, Answer(msg.what, msg.token, {"counters": counters}))
            return
        if not (isinstance(msg, WakeupMessage) and msg.payload == "scan"):
            return
        try:
            entries = scan(self.spec)
        except OSError as exc:
            self.errors += 1
            logger.warning("[{}] network scan: {} (error {})", self.node_id, exc, self.errors)
        else:
            self.scans += 1
            state = self.context.get("state")
            if state is not None:
                devices = {e.mac_addr: {"ip_addr": e.ip_addr, "device": e.device} for e in entries}
                self.send(state, DevicesSeen(devices))
        self.wakeupAfter(timedelta(seconds=self.interval), "scan")
