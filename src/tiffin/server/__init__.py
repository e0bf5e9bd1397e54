"""Wiring: builds the components from settings and runs them in one process (`tiffin up`)."""
