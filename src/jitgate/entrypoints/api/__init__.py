"""The REST API (SPEC §4)."""
