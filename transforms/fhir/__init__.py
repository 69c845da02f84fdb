"""Canonical staging frames to validated FHIR R4 resources aligned with mCODE."""
