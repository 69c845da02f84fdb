"""Deployment helpers: scripts that run Walnut on real infrastructure."""
