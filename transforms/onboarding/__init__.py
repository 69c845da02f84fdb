"""Onboarding a hospital: check a mapping against its exports, profile new exports."""
