"""Sensor drivers (against a fake I2C bus), spec parsing, simulation and the ARP scanner."""

from __future__ import annotations

import errno
import math
import random
import struct

import pytest

from sensors import (
    BME280,
    MCP9808,
    TMP102,
    NetworkEntry,
    Reading,
    ScanSpec,
    SensorError,
    SensorSpec,
    SimulatedSensor,
    open_sensor,
    parse_arp,
    parse_scan_spec,
    parse_sensor_spec,
    scan,
    scan_arp,
)
from sensors import bme280 as bme


class FakeBus:
    """smbus2-like bus emulating devices by register pointer, with optional failures.

    ``registers[address][pointer]`` is the register's bytes, MSB first (an int is one byte).
    A block read starting at a pointer returns that register's bytes and runs on into the next
    pointers (the auto-increment of byte-register devices such as the BME280).
    ``sequences[(address, pointer)]`` holds one-byte values consumed one per read first.
    """

    def __init__(self, registers: dict[int, dict[int, bytes | int]] | None = None) -> None:
        self.registers = registers if registers is not None else {}
        self.sequences: dict[tuple[int, int], list[int]] = {}
        self.writes: list[tuple[int, int, list[int]]] = []
        self.fail_reads = False
        self.fail_writes = False
        self.closed = False

    def _device(self, addr: int) -> dict[int, bytes | int]:
        if addr not in self.registers:
            raise OSError(errno.EREMOTEIO, "Remote I/O error")  # no ACK
        return self.registers[addr]

    def _register(self, addr: int, pointer: int) -> bytes:
        seq = self.sequences.get((addr, pointer))
        if seq:
            return bytes([seq.pop(0)])
        value = self._device(addr).get(pointer, 0)
        return bytes([value]) if isinstance(value, int) else bytes(value)

    def read_i2c_block_data(self, addr: int, register: int, length: int) -> list[int]:
        if self.fail_reads:
            raise OSError(errno.EIO, "Input/output error")
        self._device(addr)
        out = b""
        pointer = register
        while len(out) < length:
            out += self._register(addr, pointer)
            pointer += 1
        return list(out[:length])

    def read_byte_data(self, addr: int, register: int) -> int:
        return self.read_i2c_block_data(addr, register, 1)[0]

    def read_word_data(self, addr: int, register: int) -> int:
        lo, hi = self.read_i2c_block_data(addr, register, 2)  # SMBus words are little-endian
        return lo | (hi << 8)

    def write_byte_data(self, addr: int, register: int, value: int) -> None:
        self.write_i2c_block_data(addr, register, [value])

    def write_i2c_block_data(self, addr: int, register: int, data: list[int]) -> None:
        if self.fail_writes:
            raise OSError(errno.EIO, "Input/output error")
        device = self._device(addr)
        self.writes.append((addr, register, list(data)))
        device[register] = data[0] if len(data) == 1 else bytes(data)

    def close(self) -> None:
        self.closed = True


def word(value: int) -> bytes:
    return value.to_bytes(2, "big")


# --------------------------------------------------------------------------- TMP102


def tmp102_bus(raw: int, address: int = 0x48) -> FakeBus:
    return FakeBus({address: {0x00: word(raw), 0x01: word(0x60A0)}})


@pytest.mark.parametrize(
    "raw, celsius",
    [
        (0x1900, 25.0),  # datasheet: 0x190 -> 25 degC
        (0xE700, -25.0),  # datasheet: 0xE70 -> -25 degC
        (0x0010, 0.0625),  # one LSB
        (0xFFF0, -0.0625),  # minus one LSB
        (0x7FF0, 127.9375),  # datasheet: 0x7FF -> 127.9375 degC
        (0xC900, -55.0),  # datasheet: 0xC90 -> -55 degC
        (0x0000, 0.0),
        (0x4B01, 150.0),  # extended mode (D0 = 1): 13-bit 0x960 -> 150 degC
        (0x0009, 0.0625),  # extended mode: 13-bit count 1
        (0xFFF9, -0.0625),  # extended mode: 13-bit count -1
    ],
)
def test_tmp102_datasheet_values(raw: int, celsius: float) -> None:
    reading = TMP102(tmp102_bus(raw)).read()
    assert reading == Reading(temperature=celsius, humidity=None, pressure=None)


def test_tmp102_other_address_and_default() -> None:
    assert TMP102(tmp102_bus(0x1900, 0x4A), address=0x4A).read().temperature == 25.0
    with pytest.raises(SensorError):  # default 0x48 is not on this bus
        TMP102(tmp102_bus(0x1900, 0x4A)).read()
    with pytest.raises(ValueError, match="0x18"):
        TMP102(FakeBus(), address=0x18)


def test_tmp102_impossible_value() -> None:
    with pytest.raises(SensorError, match="impossible temperature"):
        TMP102(tmp102_bus(0x8000)).read()  # -128 degC


def test_tmp102_wraps_oserror() -> None:
    bus = tmp102_bus(0x1900)
    sensor = TMP102(bus)
    bus.fail_reads = True
    with pytest.raises(SensorError, match="TMP102 at 0x48") as info:
        sensor.read()
    assert isinstance(info.value.__cause__, OSError)
    assert not isinstance(info.value, OSError)


def test_tmp102_extended_mode_sets_em_bit() -> None:
    bus = tmp102_bus(0x1900)
    TMP102(bus, extended=True)
    assert bus.writes == [(0x48, 0x01, [0x60, 0xB0])]
    TMP102(bus, extended=False)
    assert bus.writes[-1] == (0x48, 0x01, [0x60, 0xA0])
    bus.fail_writes = True
    with pytest.raises(SensorError):
        TMP102(bus, extended=True)


# --------------------------------------------------------------------------- MCP9808


def mcp9808_bus(ambient: int, manufacturer: int = 0x0054, device: int = 0x0400) -> FakeBus:
    return FakeBus({0x18: {0x05: word(ambient), 0x06: word(manufacturer), 0x07: word(device)}})


@pytest.mark.parametrize(
    "raw, celsius",
    [
        (0x0190, 25.0),  # 0x19 * 1 + 0 = 25
        (0xC190, 25.0),  # T_CRIT and T_UPPER flags set: masked off
        (0x01D4, 29.25),  # 16 + 13 + 0.25
        (0x0001, 0.0625),
        (0x1FFF, -0.0625),  # sign set: (15 * 16 + 255 / 16) - 256
        (0x1FF0, -1.0),
        (0x1E70, -25.0),  # (14 * 16 + 0x70 / 16) - 256 = 231 - 256
        (0xFE70, -25.0),  # ... with all three flags set
        (0x1D80, -40.0),  # (13 * 16 + 8) - 256
        (0x07D0, 125.0),
    ],
)
def test_mcp9808_datasheet_conversion(raw: int, celsius: float) -> None:
    assert MCP9808(mcp9808_bus(raw)).read() == Reading(temperature=celsius)


def test_mcp9808_reads_ids_msb_first() -> None:
    # Manufacturer 0x0054 must be read MSB first; a little-endian word read would give 0x5400.
    sensor = MCP9808(mcp9808_bus(0x0190, device=0x0401))
    assert sensor.revision == 0x01


@pytest.mark.parametrize(
    "manufacturer, device, match",
    [(0x5400, 0x0400, "manufacturer ID 0x5400"), (0x0054, 0x0500, "device ID 0x05")],
)
def test_mcp9808_wrong_ids(manufacturer: int, device: int, match: str) -> None:
    with pytest.raises(SensorError, match=match):
        MCP9808(mcp9808_bus(0x0190, manufacturer, device))


def test_mcp9808_impossible_and_io_errors() -> None:
    with pytest.raises(SensorError, match="impossible"):
        MCP9808(mcp9808_bus(0x0FFF)).read()  # 255.9375 degC
    with pytest.raises(SensorError, match="impossible"):
        MCP9808(mcp9808_bus(0x1D70)).read()  # -41 degC
    with pytest.raises(SensorError, match="0x19") as info:
        MCP9808(mcp9808_bus(0x0190), address=0x19)  # nothing at 0x19
    assert info.value.__cause__.errno == errno.EREMOTEIO
    bus = mcp9808_bus(0x0190)
    sensor = MCP9808(bus)
    bus.fail_reads = True
    with pytest.raises(SensorError):
        sensor.read()


# --------------------------------------------------------------------------- BME280

# The widely published Bosch example (BMP280 datasheet 3.12, same T/P formulas as the BME280).
DATASHEET_CAL = dict(
    dig_T1=27504,
    dig_T2=26435,
    dig_T3=-1000,
    dig_P1=36477,
    dig_P2=-10685,
    dig_P3=3024,
    dig_P4=2855,
    dig_P5=140,
    dig_P6=-7,
    dig_P7=15500,
    dig_P8=-14600,
    dig_P9=6000,
    # Humidity trimming typical of a real part; dig_H5 negative to exercise the nibble packing.
    dig_H1=75,
    dig_H2=362,
    dig_H3=0,
    dig_H4=313,
    dig_H5=-7,
    dig_H6=30,
)
ADC_T, ADC_P, ADC_H = 519888, 415148, 28000


def encode_calibration(c: dict[str, int]) -> tuple[bytes, bytes]:
    """Independent encoder for datasheet Table 16 (inverse of the driver's decoder)."""
    p = [c[f"dig_P{i}"] for i in range(1, 10)]
    calib00 = struct.pack("<Hhh", c["dig_T1"], c["dig_T2"], c["dig_T3"])
    calib00 += struct.pack("<H8h", *p) + bytes([0x00, c["dig_H1"]])
    h4, h5 = c["dig_H4"] & 0xFFF, c["dig_H5"] & 0xFFF
    calib26 = struct.pack("<hB", c["dig_H2"], c["dig_H3"])
    calib26 += bytes([h4 >> 4, ((h5 & 0x0F) << 4) | (h4 & 0x0F), h5 >> 4])
    calib26 += struct.pack("<b", c["dig_H6"])
    assert len(calib00) == 26 and len(calib26) == 7
    return calib00, calib26


def encode_data(adc_t: int, adc_p: int, adc_h: int) -> bytes:
    def b20(v: int) -> list[int]:
        return [v >> 12, (v >> 4) & 0xFF, (v & 0x0F) << 4]

    return bytes(b20(adc_p) + b20(adc_t) + [adc_h >> 8, adc_h & 0xFF])


def bme_bus(cal: dict[str, int] = DATASHEET_CAL, adc=(ADC_T, ADC_P, ADC_H), chip=0x60) -> FakeBus:
    calib00, calib26 = encode_calibration(cal)
    regs = {0xD0: chip, 0xF3: 0x00}
    regs.update({0x88 + i: b for i, b in enumerate(calib00)})
    regs.update({0xE1 + i: b for i, b in enumerate(calib26)})
    regs.update({0xF7 + i: b for i, b in enumerate(encode_data(*adc))})
    return FakeBus({0x76: regs})


def c_div(a: int, b: int) -> int:
    """C integer division (truncates towards zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def reference_int(c: dict[str, int], adc_t: int, adc_p: int, adc_h: int) -> tuple[int, int, int]:
    """Datasheet section 4.2.3 integer compensation: (0.01 degC, Q24.8 Pa, Q22.10 %RH)."""
    T1, T2, T3 = c["dig_T1"], c["dig_T2"], c["dig_T3"]
    var1 = (((adc_t >> 3) - (T1 << 1)) * T2) >> 11
    var2 = (((((adc_t >> 4) - T1) * ((adc_t >> 4) - T1)) >> 12) * T3) >> 14
    t_fine = var1 + var2
    temp = (t_fine * 5 + 128) >> 8

    P = [None] + [c[f"dig_P{i}"] for i in range(1, 10)]
    var1 = t_fine - 128000
    var2 = var1 * var1 * P[6]
    var2 = var2 + ((var1 * P[5]) << 17)
    var2 = var2 + (P[4] << 35)
    var1 = ((var1 * var1 * P[3]) >> 8) + ((var1 * P[2]) << 12)
    var1 = (((1 << 47) + var1) * P[1]) >> 33
    p = 1048576 - adc_p
    p = c_div(((p << 31) - var2) * 3125, var1)
    var1 = (P[9] * (p >> 13) * (p >> 13)) >> 25
    var2 = (P[8] * p) >> 19
    p = ((p + var1 + var2) >> 8) + (P[7] << 4)

    H1, H2, H3, H4, H5, H6 = (c[f"dig_H{i}"] for i in range(1, 7))
    v = t_fine - 76800
    v = ((((adc_h << 14) - (H4 << 20) - (H5 * v)) + 16384) >> 15) * (
        ((((((v * H6) >> 10) * (((v * H3) >> 11) + 32768)) >> 10) + 2097152) * H2 + 8192) >> 14
    )
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * H1) >> 4)
    v = min(max(v, 0), 419430400)
    return temp, p, v >> 12


def test_bme280_reference_matches_published_example() -> None:
    # Guards the test's own reference: T = 25.08 degC, p = 100653.27 Pa in the Bosch example.
    temp, p, _ = reference_int(DATASHEET_CAL, ADC_T, ADC_P, ADC_H)
    assert temp == 2508
    assert p / 256 == pytest.approx(100653.27, abs=0.05)  # Q24.8 Pa


def test_bme280_calibration_nibble_packing() -> None:
    calib00, calib26 = encode_calibration(DATASHEET_CAL)
    assert bme.parse_calibration(calib00, calib26) == bme.Calibration(**DATASHEET_CAL)
    other = dict(DATASHEET_CAL, dig_H4=-300, dig_H5=1234, dig_H2=-5, dig_H6=-12, dig_H3=200)
    assert bme.parse_calibration(*encode_calibration(other)) == bme.Calibration(**other)
    # Hand-packed bytes: 0xE4 = 0x13, 0xE5 = 0x9A, 0xE6 = 0xFF -> H4 = 0x13A, H5 = 0xFF9 = -7.
    raw26 = bytes([0x6A, 0x01, 0x00, 0x13, 0x9A, 0xFF, 0x1E])
    cal = bme.parse_calibration(calib00, raw26)
    assert (cal.dig_H2, cal.dig_H4, cal.dig_H5, cal.dig_H6) == (362, 0x13A, -7, 30)


def test_bme280_compensation_matches_datasheet() -> None:
    sensor = BME280(bme_bus(), sleep=lambda s: None)
    reading = sensor.read()
    temp, p, h = reference_int(DATASHEET_CAL, ADC_T, ADC_P, ADC_H)
    assert reading.temperature == pytest.approx(25.08, abs=0.005)
    assert reading.temperature == pytest.approx(temp / 100, abs=0.01)
    assert reading.pressure == pytest.approx(1006.5327, abs=0.001)
    assert reading.pressure == pytest.approx(p / 256 / 100, abs=0.01)
    assert 30.0 < reading.humidity < 70.0
    assert reading.humidity == pytest.approx(h / 1024, abs=0.05)


@pytest.mark.parametrize(
    "adc",
    [
        (ADC_T, ADC_P, ADC_H),
        (500000, 380000, 30000),
        (530000, 450000, 33000),
        (545000, 400000, 26000),
        (470000, 360000, 36000),
        (ADC_T, ADC_P, 10000),  # clamps to 0 %RH
    ],
)
def test_bme280_double_formulas_agree_with_integer_ones(adc: tuple[int, int, int]) -> None:
    reading = BME280(bme_bus(adc=adc), sleep=lambda s: None).read()
    temp, p, h = reference_int(DATASHEET_CAL, *adc)
    assert reading.temperature == pytest.approx(temp / 100, abs=0.01)
    assert reading.pressure == pytest.approx(p / 25600, abs=0.01)
    assert reading.humidity == pytest.approx(h / 1024, abs=0.05)


def test_bme280_forced_mode_register_sequence() -> None:
    bus = bme_bus()
    slept: list[float] = []
    sensor = BME280(bus, sleep=slept.append, pressure_oversampling=4, iir_filter=4)
    # sleep mode first, then config, then ctrl_hum, then ctrl_meas to latch ctrl_hum
    assert bus.writes == [
        (0x76, 0xF4, [0b001_011_00]),
        (0x76, 0xF5, [0b101_010_00]),
        (0x76, 0xF2, [0b001]),
        (0x76, 0xF4, [0b001_011_00]),
    ]
    bus.writes.clear()
    bus.sequences[(0x76, 0xF3)] = [0x08, 0x08]  # still measuring twice
    sensor.read()
    assert bus.writes == [(0x76, 0xF4, [0b001_011_01])]  # forced
    # datasheet 9.1: 1.25 + 2.3*1 + (2.3*4 + 0.575) + (2.3*1 + 0.575) ms, then 2 polls
    assert slept[0] == pytest.approx(0.0162)
    assert slept[1:] == [0.001, 0.001]


def test_bme280_normal_mode_and_skipped_channels() -> None:
    bus = bme_bus()
    sensor = BME280(
        bus, mode="normal", pressure_oversampling=0, humidity_oversampling=0, standby_ms=62.5
    )
    assert bus.writes[-1] == (0x76, 0xF4, [0b001_000_11])
    assert bus.writes[1] == (0x76, 0xF5, [0b001_000_00])
    bus.writes.clear()
    reading = sensor.read()
    assert bus.writes == []  # normal mode: no trigger
    assert reading.pressure is None and reading.humidity is None
    assert reading.temperature == pytest.approx(25.08, abs=0.005)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "sleep"},
        {"temperature_oversampling": 0},
        {"pressure_oversampling": 3},
        {"iir_filter": 5},
        {"standby_ms": 7},
    ],
)
def test_bme280_rejects_bad_configuration(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="BME280"):
        BME280(bme_bus(), **kwargs)


def test_bme280_wrong_chip_id() -> None:
    with pytest.raises(SensorError, match="chip id 0x58"):  # a BMP280
        BME280(bme_bus(chip=0x58))


def test_bme280_errors() -> None:
    with pytest.raises(SensorError, match="blank"):
        BME280(bme_bus(cal=dict(DATASHEET_CAL, dig_T1=0)))
    with pytest.raises(SensorError, match="impossible temperature"):
        BME280(bme_bus(adc=(0xFFFFF, ADC_P, ADC_H)), sleep=lambda s: None).read()
    with pytest.raises(SensorError, match="impossible pressure"):
        BME280(bme_bus(adc=(ADC_T, 0x10, ADC_H)), sleep=lambda s: None).read()
    with pytest.raises(SensorError, match="no temperature"):
        BME280(bme_bus(adc=(0x80000, ADC_P, ADC_H)), sleep=lambda s: None).read()
    with pytest.raises(SensorError, match="no humidity"):
        BME280(bme_bus(adc=(ADC_T, ADC_P, 0x8000)), sleep=lambda s: None).read()
    bus = bme_bus()
    sensor = BME280(bus, sleep=lambda s: None)
    bus.fail_reads = True
    with pytest.raises(SensorError) as info:
        sensor.read()
    assert isinstance(info.value.__cause__, OSError)
    bus.fail_reads, bus.fail_writes = False, True
    with pytest.raises(SensorError, match="write"):
        sensor.read()


def test_bme280_measurement_timeout() -> None:
    bus = bme_bus()
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    sensor = BME280(bus, sleep=sleep, clock=lambda: now[0], timeout=0.05)
    bus.registers[0x76][0xF3] = 0x08  # stuck measuring
    with pytest.raises(SensorError, match="timed out"):
        sensor.read()
    assert 0.05 <= now[0] < 0.1


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    "text, spec",
    [
        ("none", SensorSpec("none")),
        ("sim", SensorSpec("sim")),
        ("sim:26.5", SensorSpec("sim", celsius=26.5)),
        ("sim:-3", SensorSpec("sim", celsius=-3.0)),
        ("sim~20.5", SensorSpec("sim", base=20.5)),
        (" SIM~-4 ", SensorSpec("sim", base=-4.0)),
        ("tmp102@1:0x48", SensorSpec("tmp102", bus=1, address=0x48)),
        ("TMP102@1:0X4b", SensorSpec("tmp102", bus=1, address=0x4B)),
        ("tmp102@0:72", SensorSpec("tmp102", bus=0, address=72)),
        ("mcp9808@1:0x18", SensorSpec("mcp9808", bus=1, address=0x18)),
        ("mcp9808@3:0x1f", SensorSpec("mcp9808", bus=3, address=0x1F)),
        ("bme280@1:0x76", SensorSpec("bme280", bus=1, address=0x76)),
        (" bme280@11:0x77 ", SensorSpec("bme280", bus=11, address=0x77)),
    ],
)
def test_parse_sensor_spec_valid(text: str, spec: SensorSpec) -> None:
    assert parse_sensor_spec(text) == spec
    assert parse_sensor_spec(str(spec)) == spec


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "unrecognised"),
        ("nonee", "unrecognised"),
        ("none:1", "unrecognised"),
        ("sim:", "not a number"),
        ("sim:warm", "not a number"),
        ("sim:nan", "plausible"),
        ("sim:inf", "plausible"),
        ("sim:-300", "plausible"),
        ("sim~", "not a number"),
        ("sim~warm", "not a number"),
        ("sim~nan", "plausible"),
        ("sim~:20", "not a number"),
        ("tmp102", "unrecognised"),
        ("tmp102@1", "unrecognised"),
        ("tmp102@:0x48", "bus"),
        ("tmp102@x:0x48", "bus"),
        ("tmp102@-1:0x48", "bus"),
        ("tmp102@1:", "address"),
        ("tmp102@1:0xzz", "address"),
        ("tmp102@1:0x18", "not one of 0x48"),
        ("mcp9808@1:0x48", "not one of 0x18"),
        ("bme280@1:0x48", "not one of 0x76"),
        ("dht22@1:0x40", "unknown sensor 'dht22'"),
    ],
)
def test_parse_sensor_spec_invalid(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="bad sensor spec") as info:
        parse_sensor_spec(text)
    message = str(info.value)
    assert why in message and "\n" not in message and repr(text) in message


def test_open_sensor() -> None:
    opened: list[int] = []

    def factory(n: int) -> FakeBus:
        opened.append(n)
        return tmp102_bus(0x1900)

    assert open_sensor("none", bus_factory=factory) is None
    sim = open_sensor(parse_sensor_spec("sim:26.5"), bus_factory=factory)
    assert isinstance(sim, SimulatedSensor) and sim.read() == Reading(temperature=26.5)
    assert opened == []
    sensor = open_sensor("tmp102@1:0x48", bus_factory=factory)
    assert isinstance(sensor, TMP102) and opened == [1]
    assert sensor.read().temperature == 25.0
    sensor.close()


def test_open_sensor_failures_close_the_bus() -> None:
    def missing(n: int) -> FakeBus:
        raise FileNotFoundError(f"/dev/i2c-{n}")

    with pytest.raises(SensorError, match="cannot open I2C bus 7"):
        open_sensor("bme280@7:0x76", bus_factory=missing)
    bus = FakeBus()  # nothing answers
    with pytest.raises(SensorError):
        open_sensor("mcp9808@1:0x18", bus_factory=lambda n: bus)
    assert bus.closed
    good = bme_bus()
    sensor = open_sensor("bme280@1:0x76", bus_factory=lambda n: good)
    assert isinstance(sensor, BME280) and not good.closed


# --------------------------------------------------------------------------- simulation


def test_simulated_constant() -> None:
    sensor = SimulatedSensor(26.5, rng=random.Random(1))
    readings = {sensor.read() for _ in range(5)} | {sensor.read(now=1e6)}
    assert readings == {Reading(temperature=26.5)}
    with pytest.raises(ValueError):
        SimulatedSensor(float("nan"))


def test_simulated_deterministic_for_seeded_rng() -> None:
    def run(seed: int) -> list[Reading]:
        random.seed(seed * 7 + 3)  # the global RNG must not matter
        sensor = SimulatedSensor(rng=random.Random(seed))
        return [sensor.read() for _ in range(50)] + [sensor.read(now=5000.0 + i) for i in range(3)]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_simulated_is_plausible_and_drifts_slowly() -> None:
    sensor = SimulatedSensor(rng=random.Random(3))
    day = [sensor.read(now=i * 60.0) for i in range(24 * 60)]
    temps = [r.temperature for r in day]
    assert all(18.0 <= t <= 26.0 for t in temps)
    assert all(15.0 <= r.humidity <= 75.0 for r in day)
    assert all(980.0 <= r.pressure <= 1050.0 for r in day)
    assert max(abs(a - b) for a, b in zip(temps, temps[1:], strict=False)) < 0.5
    assert max(temps) - min(temps) > 1.0  # it does move
    afternoon = sum(temps[14 * 60 : 16 * 60]) / 120
    night = sum(temps[2 * 60 : 4 * 60]) / 120
    assert afternoon > night


def test_simulated_drifts_around_its_base() -> None:
    # Same seed, different base: the very same walk, shifted (rooms at different temperatures).
    warm = SimulatedSensor(rng=random.Random(5))
    cold = SimulatedSensor(rng=random.Random(5), base=19.0)
    for i in range(200):
        a, b = warm.read(now=i * 60.0), cold.read(now=i * 60.0)
        assert a.temperature - b.temperature == pytest.approx(3.0, abs=0.011)
        assert (a.humidity, a.pressure) == (b.humidity, b.pressure)
    temps = [cold.read().temperature for _ in range(100)]
    assert len(set(temps)) > 10  # it moves, reading after reading
    sensor = open_sensor("sim~19.5", rng=random.Random(5))
    assert isinstance(sensor, SimulatedSensor) and sensor.celsius is None and sensor.base == 19.5
    with pytest.raises(ValueError):
        SimulatedSensor(base=float("inf"))


def test_simulated_call_count_clock() -> None:
    a = SimulatedSensor(rng=random.Random(9))
    b = SimulatedSensor(rng=random.Random(9))
    assert [a.read() for _ in range(10)] == [b.read(now=i * 60.0) for i in range(10)]
    assert math.isfinite(a.read().temperature)


# --------------------------------------------------------------------------- ARP scan

ARP_SAMPLE = """\
IP address       HW type     Flags       HW address            Mask     Device
192.168.1.1      0x1         0x2         DC:A6:32:0A:BB:01     *        wlan0
192.168.1.23     0x1         0x0         00:00:00:00:00:00     *        wlan0
192.168.1.40     0x1         0x6         b8:27:eb:12:34:56     *        eth0
this line is garbage
10.0.0.5         0x1         0x2         00:00:00:00:00:00     *        eth0
not.an.ip        0x1         0x2         aa:bb:cc:dd:ee:01     *        eth0
10.0.0.9         0x1         0x2         zz:bb:cc:dd:ee:01     *        eth0
10.0.0.10        0x1         0xq         aa:bb:cc:dd:ee:02     *        eth0
10.0.0.11        0x1         0x2         aa:bb:cc:dd:ee:03
"""


def test_parse_arp() -> None:
    assert parse_arp(ARP_SAMPLE) == [
        NetworkEntry(mac_addr="dc:a6:32:0a:bb:01", ip_addr="192.168.1.1", device="wlan0"),
        NetworkEntry(mac_addr="b8:27:eb:12:34:56", ip_addr="192.168.1.40", device="eth0"),
    ]
    assert parse_arp("") == []
    assert parse_arp(ARP_SAMPLE.splitlines()[0]) == []


def test_scan_arp_and_specs(tmp_path) -> None:
    path = tmp_path / "arp"
    path.write_text(ARP_SAMPLE)
    assert [e.ip_addr for e in scan_arp(str(path))] == ["192.168.1.1", "192.168.1.40"]
    with pytest.raises(OSError):
        scan_arp(str(tmp_path / "missing"))
    assert parse_scan_spec("none") == ScanSpec("none")
    assert parse_scan_spec("arp") == ScanSpec("arp", "/proc/net/arp")
    spec = parse_scan_spec(f"file:{path}")
    assert spec == ScanSpec("arp", str(path))
    assert len(scan(spec)) == 2
    assert scan(parse_scan_spec("none")) == []


@pytest.mark.parametrize("text", ["", "ARP", "file:", "file", "proc", "arp:/x"])
def test_parse_scan_spec_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="scan spec") as info:
        parse_scan_spec(text)
    assert "\n" not in str(info.value)
