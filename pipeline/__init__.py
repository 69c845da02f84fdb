"""Walnut pipeline package."""
