"""Web pages: the one-click link pages (confirmation, decision, request view)."""
