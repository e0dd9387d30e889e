"""PLACEHOLDER being replaced by the check helper."""
