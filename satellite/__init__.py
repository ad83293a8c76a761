"""Satellite's client library: ``from satellite import Antenna``."""

from satellite.antenna import Antenna, AntennaError, HandshakeRefused, NodeUnreachable

__all__ = ["Antenna", "AntennaError", "HandshakeRefused", "NodeUnreachable"]
