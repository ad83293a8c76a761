"""The one percentile rule of our benchmarks and the simulator."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile ``../shared/bench/peers.py`` uses (rank ``q*(n-1)``,
    rounded), so our figures and the peers' are read alike; None for no values."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]
