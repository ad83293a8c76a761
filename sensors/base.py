"""Shared types for the sensor drivers: the reading, the error, and guarded I2C access.

The drivers talk to an smbus2-like bus object (duck-typed): ``read_i2c_block_data``,
``read_byte_data``, ``write_byte_data`` and ``write_i2c_block_data`` are the methods used.
SMBus *word* reads are little-endian, while every sensor here sends its registers MSB first,
so multi-byte registers are always read as blocks and assembled explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol


class SensorError(Exception):
    """A sensor could not be read: bus I/O failure, wrong device, or an impossible value."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement. Fields a sensor cannot measure are ``None``; pressure is in hPa."""

    temperature: float | None = None
    humidity: float | None = None
    pressure: float | None = None


class Sensor(Protocol):
    def read(self) -> Reading: ...


def check_range(name: str, value: float, low: float, high: float) -> float:
    """Return ``value`` or raise SensorError if it is not finite or outside [low, high]."""
    if not math.isfinite(value) or not low <= value <= high:
        raise SensorError(f"impossible {name} {value!r}: outside [{low}, {high}]")
    return value


class I2CDevice:
    """Base for I2C drivers: holds the bus and address and wraps every OSError."""

    NAME = "i2c device"
    ADDRESSES: tuple[int, ...] = ()

    def __init__(self, bus: Any, address: int) -> None:
        if self.ADDRESSES and address not in self.ADDRESSES:
            allowed = ", ".join(f"0x{a:02x}" for a in self.ADDRESSES)
            raise ValueError(f"{self.NAME} address 0x{address:02x} not one of {allowed}")
        self._bus = bus
        self.address = address

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address=0x{self.address:02x})"

    def _fail(self, what: str, exc: BaseException) -> SensorError:
        return SensorError(f"{self.NAME} at 0x{self.address:02x}: {what} failed: {exc}")

    def _read_block(self, register: int, length: int) -> list[int]:
        try:
            data = list(self._bus.read_i2c_block_data(self.address, register, length))
        except OSError as exc:
            raise self._fail(f"read of register 0x{register:02x}", exc) from exc
        if len(data) != length or any(not 0 <= b <= 0xFF for b in data):
            raise SensorError(
                f"{self.NAME} at 0x{self.address:02x}: register 0x{register:02x} "
                f"returned {data!r}, expected {length} bytes"
            )
        return data

    def _read_byte(self, register: int) -> int:
        return self._read_block(register, 1)[0]

    def _read_u16_be(self, register: int) -> int:
        msb, lsb = self._read_block(register, 2)
        return (msb << 8) | lsb

    def _write_byte(self, register: int, value: int) -> None:
        try:
            self._bus.write_byte_data(self.address, register, value & 0xFF)
        except OSError as exc:
            raise self._fail(f"write of register 0x{register:02x}", exc) from exc

    def _write_block(self, register: int, data: list[int]) -> None:
        try:
            self._bus.write_i2c_block_data(self.address, register, [b & 0xFF for b in data])
        except OSError as exc:
            raise self._fail(f"write of register 0x{register:02x}", exc) from exc

    def close(self) -> None:
        """Close the underlying bus (if it has ``close``)."""
        close = getattr(self._bus, "close", None)
        if close is not None:
            try:
                close()
            except OSError as exc:
                raise self._fail("bus close", exc) from exc
