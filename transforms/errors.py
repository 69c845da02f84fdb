"""Walnut's exception hierarchy: config problems stop a run early, data problems are reported."""

from __future__ import annotations


class WalnutError(Exception):
    """Base of every error Walnut raises on purpose."""


class ConfigError(WalnutError):
    """A setting, environment variable or mapping file is missing or invalid; fix it and rerun."""


class MappingError(ConfigError):
    """A file under mappings/ is malformed; the message names its file, line and column."""


class PseudonymKeyMissing(ConfigError):
    """The pseudonymisation key is absent or too short; the run cannot produce stable pseudonyms."""


class ValidationFailed(WalnutError):
    """A critical data-quality expectation failed; the batch is not published."""


class ReconciliationError(WalnutError):
    """Rows read != rows loaded + quarantined + dropped; something was lost and the run stops."""
