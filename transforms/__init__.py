"""Walnut transforms package."""
