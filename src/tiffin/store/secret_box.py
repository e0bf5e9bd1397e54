"""Encryption at rest for secret values: JSON in, Fernet token out, and back."""

import json
from typing import Any

from cryptography.fernet import Fernet


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, value: Any) -> str:
        return self._fernet.encrypt(json.dumps(value).encode()).decode()

    def open(self, token: str) -> Any:
        return json.loads(self._fernet.decrypt(token.encode()))
