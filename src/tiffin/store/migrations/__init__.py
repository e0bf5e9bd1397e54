"""Alembic migrations of the Tiffin store; `tiffin.store.db.migrate` applies them."""
