"""Satellite: actors."""
