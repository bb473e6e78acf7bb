"""Backends: plugins that apply and remove grants on real systems (SPEC §7)."""
