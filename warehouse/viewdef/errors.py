"""The one exception the ViewDefinition runner raises for invalid or unsupported views."""

from __future__ import annotations


class ViewDefinitionError(ValueError):
    """A ViewDefinition is invalid, uses unsupported FHIRPath, or failed a run-time check."""
