"""Walnut warehouse package."""
