"""Walnut expectations package."""
