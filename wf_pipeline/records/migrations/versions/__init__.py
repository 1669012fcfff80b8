"""Revisions of the record store, one module each (alembic loads them from this folder)."""
