"""Satellite's client library: ``from satellite import Antenna``."""

from satellite.antenna import (
    Antenna,
    AntennaError,
    BadKey,
    Data,
    Event,
    HandshakeRefused,
    NodeUnreachable,
)

__all__ = [
    "Antenna",
    "AntennaError",
    "BadKey",
    "Data",
    "Event",
    "HandshakeRefused",
    "NodeUnreachable",
]
