"""Satellite: sensors."""
