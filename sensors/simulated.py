"""A simulated sensor for nodes without hardware (and for tests)."""

from __future__ import annotations

import math
import random

from sensors.base import Reading

DAY_S = 86400.0
STEP_S = 60.0  # simulated seconds per read() when no ``now`` is given
BASE_C = 22.0  # the drifting office's daily mean temperature, unless told otherwise


class SimulatedSensor:
    """Constant ``celsius`` if given, else a slowly drifting office climate around
    ``base`` degC (so simulated rooms can differ: a sunny corner, a cold meeting room).

    The drift is a daily cycle (warmest mid-afternoon) plus a mean-reverting random walk
    (Ornstein-Uhlenbeck) driven only by ``rng``; time comes from ``read(now=...)`` in seconds,
    or advances ``STEP_S`` per call. The same seed and the same calls give the same readings.
    Without an ``rng`` the sensor makes its own private, unseeded ``random.Random``.
    """

    def __init__(
        self,
        celsius: float | None = None,
        rng: random.Random | None = None,
        base: float = BASE_C,
    ) -> None:
        if celsius is not None and not math.isfinite(celsius):
            raise ValueError(f"simulated celsius {celsius!r} is not a finite number")
        if not math.isfinite(base):
            raise ValueError(f"simulated base {base!r} is not a finite number")
        self.celsius = celsius
        self.base = base
        self._rng = rng if rng is not None else random.Random()
        self._t: float | None = None
        self._calls = 0
        # Offsets from the daily baseline: degC, %RH, hPa.
        self._dt = 0.0
        self._dh = 0.0
        self._dp = self._rng.uniform(-8.0, 8.0) if celsius is None else 0.0

    def _walk(self, x: float, dt: float, tau: float, sigma: float, bound: float) -> float:
        # Exact OU update: x decays with time constant tau, stationary std-dev sigma.
        decay = math.exp(-dt / tau)
        x = x * decay + sigma * math.sqrt(1.0 - decay * decay) * self._rng.gauss(0.0, 1.0)
        return max(-bound, min(bound, x))

    def read(self, now: float | None = None) -> Reading:
        if self.celsius is not None:
            return Reading(temperature=self.celsius)
        t = float(now) if now is not None else self._calls * STEP_S
        self._calls += 1
        dt = STEP_S if self._t is None else max(0.0, t - self._t)
        self._t = t
        self._dt = self._walk(self._dt, dt, tau=1800.0, sigma=0.4, bound=1.5)
        self._dh = self._walk(self._dh, dt, tau=3600.0, sigma=3.0, bound=10.0)
        self._dp = self._walk(self._dp, dt, tau=6 * 3600.0, sigma=6.0, bound=25.0)
        phase = 2.0 * math.pi * ((t % DAY_S) - 9 * 3600.0) / DAY_S  # peak at 15:00
        temperature = self.base + 1.5 * math.sin(phase) + self._dt
        humidity = 45.0 - 5.0 * math.sin(phase) + self._dh  # drier when warmer
        pressure = 1013.25 + self._dp
        return Reading(
            temperature=round(temperature, 2),
            humidity=round(min(100.0, max(0.0, humidity)), 1),
            pressure=round(pressure, 2),
        )
