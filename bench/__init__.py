"""jitgate benchmarks. Each one measures a figure, a baseline in the same run, and prints
the ratio against the goal. Run all with ``python -m bench``, one with
``python -m bench.authorize`` (``lifecycle``, ``expiry``, ``audit_query``).

Nothing here touches the network beyond 127.0.0.1, and every loop is bounded in count and
in time."""
