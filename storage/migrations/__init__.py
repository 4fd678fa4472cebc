"""Alembic migrations of difybot's schema (run through ``storage.migrate``, not the alembic CLI)."""
