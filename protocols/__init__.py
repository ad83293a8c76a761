"""Satellite: protocols."""
