"""Adapters: the edges of jitgate (policy files, database, backends, notifiers)."""
