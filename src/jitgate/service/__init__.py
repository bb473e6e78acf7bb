"""Use cases. Each handler owns its transaction: the state change, its audit events and its
notifications commit together or not at all."""
