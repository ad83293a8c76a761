"""Satellite: satellite."""
