"""Identifiers and secrets: one place that decides how uids and API token secrets look."""

import secrets
import uuid

TOKEN_PREFIX = "tfn_"


def new_uid() -> str:
    """A random, URL-safe unique id for any stored resource."""
    return uuid.uuid4().hex


def new_token_secret() -> str:
    """A fresh API token secret; only its hash is ever stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)
