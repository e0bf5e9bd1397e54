"""Tiffin: a self-hosted cloud for BentoML services, driven by the unmodified bentoml CLI and SDK."""

__version__ = "0.1.0"
