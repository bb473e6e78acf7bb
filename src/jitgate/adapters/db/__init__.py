"""SQL storage (SQLAlchemy 2 Core): SQLite by default, PostgreSQL by URL."""
