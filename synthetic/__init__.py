"""Walnut synthetic package."""
