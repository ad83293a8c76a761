"""Bosch BME280 combined temperature, pressure and humidity sensor.

Numbers from the Bosch BME280 datasheet (BST-BME280-DS002):
- Memory map (section 5.3) and register descriptions (section 5.4): chip id 0xD0 reads 0x60;
  reset 0xE0; ctrl_hum 0xF2 (osrs_h[2:0]); status 0xF3 (measuring bit 3, im_update bit 0);
  ctrl_meas 0xF4 (osrs_t[7:5], osrs_p[4:2], mode[1:0]: 00 sleep, 01 forced, 11 normal);
  config 0xF5 (t_sb[7:5], filter[4:2]); data 0xF7..0xFE (press msb/lsb/xlsb[7:4],
  temp msb/lsb/xlsb[7:4], hum msb/lsb), to be read in one burst (section 4).
  ctrl_hum only takes effect after a write to ctrl_meas (5.4.3); config writes may be
  ignored in normal mode, so it is written in sleep mode (5.4.6).
- Oversampling codes (register tables of 5.4.3 and 5.4.5): 0 skipped (the output then reads
  0x80000 / 0x8000), 1 x1, 2 x2, 3 x4, 4 x8, 5 x16. Filter codes (5.4.6): off, 2, 4, 8, 16.
  Standby t_sb (5.4.6): 0.5, 62.5, 125, 250, 500, 1000, 10, 20 ms.
- Calibration (section 4.2.2, Table 16): dig_T1..dig_T3, dig_P1..dig_P9 little-endian at
  0x88..0x9F, dig_H1 at 0xA1, dig_H2 at 0xE1/0xE2, dig_H3 at 0xE3, dig_H4 = 0xE4[11:4] with
  0xE5[3:0], dig_H5 = 0xE6[11:4] with 0xE5[7:4] (both signed 12 bit), dig_H6 at 0xE7 (signed).
- Compensation: the floating-point formulas of section 8.1 (the integer ones of 4.2.3 give the
  same results to within their resolution; the test suite checks the driver against them).
- Maximum measurement time (section 9.1 / Appendix B):
  1.25 + 2.3 * T_os + (2.3 * P_os + 0.575) + (2.3 * H_os + 0.575) ms.
- Operating range (Table 1 / section 1): -40..+85 degC, 300..1100 hPa, 0..100 %RH.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sensors.base import I2CDevice, Reading, SensorError, check_range

CHIP_ID_REGISTER = 0xD0
CHIP_ID = 0x60
CALIB_00 = 0x88  # 0x88..0xA1: 26 bytes
CALIB_26 = 0xE1  # 0xE1..0xE7: 7 bytes
CTRL_HUM = 0xF2
STATUS = 0xF3
CTRL_MEAS = 0xF4
CONFIG = 0xF5
DATA = 0xF7  # 0xF7..0xFE: 8 bytes

STATUS_MEASURING = 0x08
STATUS_IM_UPDATE = 0x01
MODE_SLEEP = 0b00
MODE_FORCED = 0b01
MODE_NORMAL = 0b11
SKIPPED_20BIT = 0x80000
SKIPPED_16BIT = 0x8000

OVERSAMPLING_CODES = {0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5}
FILTER_CODES = {0: 0, 2: 1, 4: 2, 8: 3, 16: 4}
STANDBY_CODES = {0.5: 0, 62.5: 1, 125.0: 2, 250.0: 3, 500.0: 4, 1000.0: 5, 10.0: 6, 20.0: 7}

MIN_CELSIUS, MAX_CELSIUS = -40.0, 85.0
MIN_HPA, MAX_HPA = 300.0, 1100.0


@dataclass(frozen=True, slots=True)
class Calibration:
    dig_T1: int
    dig_T2: int
    dig_T3: int
    dig_P1: int
    dig_P2: int
    dig_P3: int
    dig_P4: int
    dig_P5: int
    dig_P6: int
    dig_P7: int
    dig_P8: int
    dig_P9: int
    dig_H1: int
    dig_H2: int
    dig_H3: int
    dig_H4: int
    dig_H5: int
    dig_H6: int


def _u16(data: Sequence[int], i: int) -> int:
    return data[i] | (data[i + 1] << 8)


def _s16(data: Sequence[int], i: int) -> int:
    value = _u16(data, i)
    return value - 0x10000 if value & 0x8000 else value


def _s8(value: int) -> int:
    return value - 0x100 if value & 0x80 else value


def parse_calibration(calib00: Sequence[int], calib26: Sequence[int]) -> Calibration:
    """Decode the 26 bytes at 0x88..0xA1 and the 7 bytes at 0xE1..0xE7 (Table 16)."""
    if len(calib00) != 26 or len(calib26) != 7:
        raise ValueError("BME280 calibration needs 26 + 7 bytes")
    a, h = calib00, calib26
    return Calibration(
        dig_T1=_u16(a, 0),
        dig_T2=_s16(a, 2),
        dig_T3=_s16(a, 4),
        dig_P1=_u16(a, 6),
        dig_P2=_s16(a, 8),
        dig_P3=_s16(a, 10),
        dig_P4=_s16(a, 12),
        dig_P5=_s16(a, 14),
        dig_P6=_s16(a, 16),
        dig_P7=_s16(a, 18),
        dig_P8=_s16(a, 20),
        dig_P9=_s16(a, 22),
        # a[24] is 0xA0, unused
        dig_H1=a[25],
        dig_H2=_s16(h, 0),
        dig_H3=h[2],
        dig_H4=(_s8(h[3]) * 16) | (h[4] & 0x0F),  # 0xE4 = H4[11:4], 0xE5[3:0] = H4[3:0]
        dig_H5=(_s8(h[5]) * 16) | (h[4] >> 4),  # 0xE6 = H5[11:4], 0xE5[7:4] = H5[3:0]
        dig_H6=_s8(h[6]),
    )


def compensate_temperature(cal: Calibration, adc_t: int) -> tuple[float, float]:
    """Section 8.1 double formula: returns (degC, t_fine)."""
    var1 = (adc_t / 16384.0 - cal.dig_T1 / 1024.0) * cal.dig_T2
    var2 = (adc_t / 131072.0 - cal.dig_T1 / 8192.0) ** 2 * cal.dig_T3
    t_fine = var1 + var2
    return t_fine / 5120.0, t_fine


def compensate_pressure(cal: Calibration, adc_p: int, t_fine: float) -> float:
    """Section 8.1 double formula: pressure in Pa."""
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * cal.dig_P6 / 32768.0
    var2 = var2 + var1 * cal.dig_P5 * 2.0
    var2 = var2 / 4.0 + cal.dig_P4 * 65536.0
    var1 = (cal.dig_P3 * var1 * var1 / 524288.0 + cal.dig_P2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * cal.dig_P1
    if var1 == 0.0:  # the datasheet returns 0 here to avoid dividing by zero
        raise SensorError("BME280 pressure compensation divides by zero (bad calibration)")
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = cal.dig_P9 * p * p / 2147483648.0
    var2 = p * cal.dig_P8 / 32768.0
    return p + (var1 + var2 + cal.dig_P7) / 16.0


def compensate_humidity(cal: Calibration, adc_h: int, t_fine: float) -> float:
    """Section 8.1 double formula: relative humidity in %, clamped to 0..100 as there."""
    var_h = t_fine - 76800.0
    var_h = (adc_h - (cal.dig_H4 * 64.0 + cal.dig_H5 / 16384.0 * var_h)) * (
        cal.dig_H2
        / 65536.0
        * (1.0 + cal.dig_H6 / 67108864.0 * var_h * (1.0 + cal.dig_H3 / 67108864.0 * var_h))
    )
    var_h = var_h * (1.0 - cal.dig_H1 * var_h / 524288.0)
    return min(100.0, max(0.0, var_h))


def measurement_time_s(osrs_t: int, osrs_p: int, osrs_h: int) -> float:
    """Maximum measurement time (section 9.1) for the given oversampling multipliers."""
    ms = 1.25 + 2.3 * osrs_t
    if osrs_p:
        ms += 2.3 * osrs_p + 0.575
    if osrs_h:
        ms += 2.3 * osrs_h + 0.575
    return ms / 1000.0


def _code(table: dict, value: Any, what: str) -> int:
    try:
        return table[value]
    except (KeyError, TypeError):
        allowed = ", ".join(str(k) for k in table)
        raise ValueError(f"BME280 {what} {value!r} not one of {allowed}") from None


class BME280(I2CDevice):
    NAME = "BME280"
    ADDRESSES = (0x76, 0x77)

    def __init__(
        self,
        bus: Any,
        address: int = 0x76,
        *,
        mode: str = "forced",
        temperature_oversampling: int = 1,
        pressure_oversampling: int = 1,
        humidity_oversampling: int = 1,
        iir_filter: int = 0,
        standby_ms: float = 1000.0,
        timeout: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Check the chip id, read the calibration and configure the sensor.

        ``mode`` is "forced" (one conversion per ``read()``, sleeping in between) or "normal"
        (continuous conversions every ``standby_ms``). Oversampling values are multipliers
        (0 skips pressure/humidity); temperature is always needed for compensation.
        """
        super().__init__(bus, address)
        if mode not in ("forced", "normal"):
            raise ValueError(f"BME280 mode {mode!r} not 'forced' or 'normal'")
        if temperature_oversampling == 0:
            raise ValueError("BME280 temperature oversampling cannot be 0 (needed for t_fine)")
        osrs_t = _code(OVERSAMPLING_CODES, temperature_oversampling, "temperature oversampling")
        osrs_p = _code(OVERSAMPLING_CODES, pressure_oversampling, "pressure oversampling")
        osrs_h = _code(OVERSAMPLING_CODES, humidity_oversampling, "humidity oversampling")
        filt = _code(FILTER_CODES, iir_filter, "IIR filter")
        t_sb = _code(STANDBY_CODES, float(standby_ms), "standby_ms")
        self.mode = mode
        self._timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._pressure_on = pressure_oversampling != 0
        self._humidity_on = humidity_oversampling != 0
        self._measure_s = measurement_time_s(
            temperature_oversampling, pressure_oversampling, humidity_oversampling
        )

        chip_id = self._read_byte(CHIP_ID_REGISTER)
        if chip_id != CHIP_ID:
            raise SensorError(
                f"BME280 at 0x{address:02x}: chip id 0x{chip_id:02x}, expected 0x{CHIP_ID:02x}"
            )
        self._wait_status(STATUS_IM_UPDATE, "NVM copy")
        self.calibration = parse_calibration(
            self._read_block(CALIB_00, 26), self._read_block(CALIB_26, 7)
        )
        if self.calibration.dig_T1 == 0 or self.calibration.dig_P1 == 0:
            raise SensorError(f"BME280 at 0x{address:02x}: calibration is blank")

        self._ctrl_meas = (osrs_t << 5) | (osrs_p << 2)
        self._write_byte(CTRL_MEAS, self._ctrl_meas | MODE_SLEEP)  # config only sticks in sleep
        self._write_byte(CONFIG, (t_sb << 5) | (filt << 2))
        self._write_byte(CTRL_HUM, osrs_h)  # effective after the ctrl_meas write below
        final_mode = MODE_NORMAL if mode == "normal" else MODE_SLEEP
        self._write_byte(CTRL_MEAS, self._ctrl_meas | final_mode)

    def _wait_status(self, bit: int, what: str) -> None:
        deadline = self._clock() + self._timeout
        while self._read_byte(STATUS) & bit:
            if self._clock() >= deadline:
                raise SensorError(f"BME280 at 0x{self.address:02x}: timed out waiting for {what}")
            self._sleep(0.001)

    def read_raw(self) -> tuple[int, int, int]:
        """(adc_T, adc_P, adc_H) from one burst read of 0xF7..0xFE, triggering if forced."""
        if self.mode == "forced":
            self._write_byte(CTRL_MEAS, self._ctrl_meas | MODE_FORCED)
            self._sleep(self._measure_s)
            self._wait_status(STATUS_MEASURING, "a measurement")
        d = self._read_block(DATA, 8)
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        return adc_t, adc_p, adc_h

    def read(self) -> Reading:
        adc_t, adc_p, adc_h = self.read_raw()
        if adc_t == SKIPPED_20BIT:
            raise SensorError(f"BME280 at 0x{self.address:02x}: no temperature measurement yet")
        celsius, t_fine = compensate_temperature(self.calibration, adc_t)
        check_range("temperature", celsius, MIN_CELSIUS, MAX_CELSIUS)
        hpa = humidity = None
        if self._pressure_on:
            if adc_p == SKIPPED_20BIT:
                raise SensorError(f"BME280 at 0x{self.address:02x}: no pressure measurement")
            hpa = compensate_pressure(self.calibration, adc_p, t_fine) / 100.0
            check_range("pressure", hpa, MIN_HPA, MAX_HPA)
        if self._humidity_on:
            if adc_h == SKIPPED_16BIT:
                raise SensorError(f"BME280 at 0x{self.address:02x}: no humidity measurement")
            humidity = compensate_humidity(self.calibration, adc_h, t_fine)
        return Reading(temperature=celsius, humidity=humidity, pressure=hpa)
