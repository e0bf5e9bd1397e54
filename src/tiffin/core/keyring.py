"""The server's symmetric key, kept in a file under TIFFIN_HOME readable by its owner only.

It encrypts secrets at rest and signs presigned upload/download URLs.
"""

import os
from pathlib import Path

from cryptography.fernet import Fernet


def load_or_create_key(path: Path) -> bytes:
    """Return the key in `path`, creating it (mode 0600) on first use."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
