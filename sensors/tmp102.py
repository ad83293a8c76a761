"""TI TMP102 digital temperature sensor.

Numbers from the TI TMP102 datasheet (SBOS397):
- Pointer register: 0x00 temperature (read-only), 0x01 configuration ("Pointer Register").
- Temperature register ("Temperature Register", "Temperature Data Format" table): 12-bit two's
  complement left-justified in the 16-bit register (D15..D4), 0.0625 degC per LSB
  (0x190 = 25 degC, 0xE70 = -25 degC, 0x7FF = 127.9375 degC). In extended mode (EM = 1) the
  result is 13 bits (D15..D3) and bit D0 of byte 2 reads 1 (it reads 0 in normal mode).
- Configuration register byte 2 bit D4 is EM, extended mode; power-on value 0x60A0.
- The data-format table spans -55 degC .. +150 degC (extended mode reaches 150 degC),
  so anything outside that is treated as impossible.
- Addresses 0x48..0x4B selected by the ADD0 pin (GND, V+, SDA, SCL).
"""

from __future__ import annotations

from typing import Any

from sensors.base import I2CDevice, Reading, check_range

TEMPERATURE_REGISTER = 0x00
CONFIG_REGISTER = 0x01
EM_BIT = 0x10  # byte 2 of the configuration register
LSB_CELSIUS = 0.0625
MIN_CELSIUS = -55.0
MAX_CELSIUS = 150.0


def decode_temperature(msb: int, lsb: int) -> float:
    """Convert the two temperature register bytes (MSB first) to degC.

    Bit D0 of the second byte tells 13-bit extended mode (1) from 12-bit normal mode (0).
    """
    raw = (msb << 8) | lsb
    if lsb & 0x01:  # extended mode: 13-bit result in D15..D3
        count = raw >> 3
        bits = 13
    else:  # normal mode: 12-bit result in D15..D4
        count = raw >> 4
        bits = 12
    if count & (1 << (bits - 1)):  # two's complement sign bit
        count -= 1 << bits
    return count * LSB_CELSIUS


class TMP102(I2CDevice):
    NAME = "TMP102"
    ADDRESSES = (0x48, 0x49, 0x4A, 0x4B)

    def __init__(self, bus: Any, address: int = 0x48, *, extended: bool | None = None) -> None:
        """``extended`` True/False sets/clears the EM bit; None leaves the configuration alone."""
        super().__init__(bus, address)
        if extended is not None:
            config = self._read_block(CONFIG_REGISTER, 2)
            if extended:
                config[1] |= EM_BIT
            else:
                config[1] &= ~EM_BIT & 0xFF
            self._write_block(CONFIG_REGISTER, config)

    def read(self) -> Reading:
        msb, lsb = self._read_block(TEMPERATURE_REGISTER, 2)
        celsius = decode_temperature(msb, lsb)
        return Reading(temperature=check_range("temperature", celsius, MIN_CELSIUS, MAX_CELSIUS))
