"""The ``jitgate`` command line (SPEC §5): one command group per file."""
