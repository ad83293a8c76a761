"""Satellite: bench."""
