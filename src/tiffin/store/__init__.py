"""The store: what users asked for (organizations, tokens, registry, secrets), in SQLite or PostgreSQL."""
