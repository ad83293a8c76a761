"""Microchip MCP9808 digital temperature sensor.

Numbers from the Microchip MCP9808 datasheet (DS25095A):
- Register pointers: 0x05 ambient temperature T_A, 0x06 manufacturer ID, 0x07 device
  ID/revision (section 5.1, register map).
- T_A register (section 5.1.3): bits 15..13 are the T_CRIT/T_UPPER/T_LOWER alarm flags, bit 12
  the sign, bits 11..0 the magnitude in 0.0625 degC steps (2^7 .. 2^-4). The "bytes to
  temperature conversion" equation masks the flags and, for a set sign bit, clears it and
  subtracts 256 from Upper * 16 + Lower / 16. (As printed in DS25095A the negative branch
  reads "256 - (...)", which yields the magnitude, not the signed value; the signed value,
  used here, equals the 13-bit two's complement reading.)
- Manufacturer ID register reads 0x0054.
- Device ID register: upper byte device ID 0x04, lower byte revision.
- Operating range -40 degC .. +125 degC, so anything outside is treated as impossible.
- Addresses 0x18..0x1F selected by the A2..A0 pins.
"""

from __future__ import annotations

from typing import Any

from sensors.base import I2CDevice, Reading, SensorError, check_range

AMBIENT_REGISTER = 0x05
MANUFACTURER_REGISTER = 0x06
DEVICE_REGISTER = 0x07
MANUFACTURER_ID = 0x0054
DEVICE_ID = 0x04
MIN_CELSIUS = -40.0
MAX_CELSIUS = 125.0


def decode_temperature(upper: int, lower: int) -> float:
    """Equation 5-1 of the datasheet, for the two T_A register bytes (MSB first)."""
    upper &= 0x1F  # clear the T_CRIT, T_UPPER, T_LOWER flag bits
    if upper & 0x10:  # T_A < 0 degC
        upper &= 0x0F  # clear the sign
        return (upper * 16 + lower / 16) - 256
    return upper * 16 + lower / 16


class MCP9808(I2CDevice):
    NAME = "MCP9808"
    ADDRESSES = tuple(range(0x18, 0x20))

    def __init__(self, bus: Any, address: int = 0x18) -> None:
        super().__init__(bus, address)
        manufacturer = self._read_u16_be(MANUFACTURER_REGISTER)
        if manufacturer != MANUFACTURER_ID:
            raise SensorError(
                f"MCP9808 at 0x{address:02x}: manufacturer ID 0x{manufacturer:04x}, "
                f"expected 0x{MANUFACTURER_ID:04x}"
            )
        device, self.revision = self._read_block(DEVICE_REGISTER, 2)
        if device != DEVICE_ID:
            raise SensorError(
                f"MCP9808 at 0x{address:02x}: device ID 0x{device:02x}, expected 0x{DEVICE_ID:02x}"
            )

    def read(self) -> Reading:
        upper, lower = self._read_block(AMBIENT_REGISTER, 2)
        celsius = decode_temperature(upper, lower)
        return Reading(temperature=check_range("temperature", celsius, MIN_CELSIUS, MAX_CELSIUS))
