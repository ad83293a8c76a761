"""Satellite: supervisors."""
