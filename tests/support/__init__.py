"""Test helpers that drive real processes: a `tiffin up` server and the real bentoml CLI."""
