"""Artifacts: the bytes of bentos and models, kept as files under TIFFIN_HOME."""
