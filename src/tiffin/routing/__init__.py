"""Routing snapshots: the immutable picture of where each deployment's traffic may go."""
