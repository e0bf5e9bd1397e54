"""The management API the unmodified bentoml CLI and SDK speak (`/api/v1`, `/api/v2`).

It validates and stores what users want; it never starts a process.
"""
