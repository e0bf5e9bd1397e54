"""Backends: the only code that touches processes or Ray; local processes for now."""
