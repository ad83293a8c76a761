"""The ``--sensor`` command-line value: parsing and opening."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import smbus2

from sensors.base import I2CDevice, SensorError
from sensors.bme280 import BME280
from sensors.mcp9808 import MCP9808
from sensors.simulated import SimulatedSensor
from sensors.tmp102 import TMP102

DRIVERS: dict[str, type[I2CDevice]] = {"tmp102": TMP102, "mcp9808": MCP9808, "bme280": BME280}
SPEC_HELP = "none, sim, sim:<celsius>, sim~<celsius>, or {tmp102,mcp9808,bme280}@<bus>:<addr>"
_I2C = re.compile(r"^(?P<kind>[a-z0-9]+)@(?P<bus>[^:]*):(?P<addr>.*)$")


@dataclass(frozen=True, slots=True)
class SensorSpec:
    kind: str  # "none", "sim", "tmp102", "mcp9808" or "bme280"
    celsius: float | None = None  # sim only: a constant reading
    bus: int | None = None  # I2C bus number, e.g. 1 for /dev/i2c-1
    address: int | None = None  # 7-bit I2C address
    base: float | None = None  # sim only: drift around this daily mean (None: the default)

    def __str__(self) -> str:
        """The spec in command-line form (parses back to an equal SensorSpec)."""
        if self.kind == "sim" and self.celsius is not None:
            return f"sim:{self.celsius!r}"
        if self.kind == "sim" and self.base is not None:
            return f"sim~{self.base!r}"
        if self.kind in DRIVERS:
            return f"{self.kind}@{self.bus}:0x{self.address:02x}"
        return self.kind


def _bad(text: str, why: str) -> ValueError:
    return ValueError(f"bad sensor spec {text!r}: {why} (expected {SPEC_HELP})")


def parse_sensor_spec(text: str) -> SensorSpec:
    """Parse ``none|sim|sim:<celsius>|sim~<celsius>|<driver>@<bus>:<addr>`` (addr decimal
    or 0x hex). ``sim:21`` reads a constant 21 degC; ``sim~21`` drifts around 21 degC."""
    value = text.strip().lower()
    if value == "none":
        return SensorSpec("none")
    if value == "sim":
        return SensorSpec("sim")
    if value[:4] in ("sim:", "sim~"):
        raw = value[4:]
        try:
            celsius = float(raw)
        except ValueError:
            raise _bad(text, f"celsius {raw!r} is not a number") from None
        if not math.isfinite(celsius) or not -273.15 <= celsius <= 1000.0:
            raise _bad(text, f"celsius {raw!r} is not a plausible temperature")
        if value[3] == "~":
            return SensorSpec("sim", base=celsius)
        return SensorSpec("sim", celsius=celsius)
    m = _I2C.match(value)
    if m is None:
        raise _bad(text, "unrecognised form")
    kind, bus_text, addr_text = m["kind"], m["bus"], m["addr"]
    driver = DRIVERS.get(kind)
    if driver is None:
        raise _bad(text, f"unknown sensor {kind!r}")
    if not bus_text.isdigit() or not bus_text.isascii():
        raise _bad(text, f"bus {bus_text!r} is not a non-negative integer")
    try:
        address = int(addr_text, 0)
    except ValueError:
        raise _bad(text, f"address {addr_text!r} is not an integer like 0x48") from None
    if address not in driver.ADDRESSES:
        allowed = ", ".join(f"0x{a:02x}" for a in driver.ADDRESSES)
        raise _bad(text, f"{kind} address {address:#04x} is not one of {allowed}")
    return SensorSpec(kind, bus=int(bus_text), address=address)


def open_sensor(
    spec: SensorSpec | str,
    bus_factory: Callable[[int], Any] = smbus2.SMBus,
    rng: random.Random | None = None,
) -> Any:
    """Build the sensor for ``spec``: None for "none", a SimulatedSensor, or an I2C driver.

    ``bus_factory(bus_number)`` opens the bus; failures to open it or to talk to the device
    raise SensorError (and the bus is closed again).
    """
    if isinstance(spec, str):
        spec = parse_sensor_spec(spec)
    if spec.kind == "none":
        return None
    if spec.kind == "sim":
        if spec.base is not None:
            return SimulatedSensor(rng=rng, base=spec.base)
        return SimulatedSensor(spec.celsius, rng=rng)
    driver = DRIVERS[spec.kind]
    try:
        bus = bus_factory(spec.bus)
    except OSError as exc:
        raise SensorError(f"cannot open I2C bus {spec.bus} for {spec.kind}: {exc}") from exc
    try:
        return driver(bus, spec.address)
    except BaseException:
        close = getattr(bus, "close", None)
        if close is not None:
            try:
                close()
            except OSError:
                pass
        raise
