"""The registry database (SQLAlchemy; SQLite by default, PostgreSQL by URL)."""
