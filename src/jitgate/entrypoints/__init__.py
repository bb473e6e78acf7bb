"""Entrypoints: the API, web pages, CLI and scheduler. Thin: they parse, call a handler, render."""
