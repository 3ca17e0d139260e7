"""Deterministic Fernet keys and tokens, so a sample deployment is reproducible byte for byte."""

from __future__ import annotations

import base64
import random

from cryptography.fernet import Fernet

ENCRYPTED_PREFIX = "encrypted:"  # how ProxyWhirl marks an encrypted credential column


def derive_fernet_key(rng: random.Random) -> str:
    """A Fernet key (url-safe base64 of 32 bytes) drawn from ``rng``."""
    return base64.urlsafe_b64encode(rng.randbytes(32)).decode("ascii")


class SampleCipher:
    """Fernet encryption with IVs from ``rng`` and a fixed issue time, as a sample needs."""

    def __init__(self, key: str, rng: random.Random, issued_at: int) -> None:
        self._fernet = Fernet(key)
        self._rng = rng
        self._issued_at = issued_at

    def token(self, plaintext: str) -> str:
        """A Fernet token for ``plaintext``, as ProxyWhirl's config file holds it."""
        # Fernet.encrypt stamps the current time and a random IV; a reproducible sample needs
        # both fixed, so they come from the seed and the sample's end date instead.
        iv = self._rng.randbytes(16)
        token = self._fernet._encrypt_from_parts(plaintext.encode("utf-8"), self._issued_at, iv)
        return token.decode("ascii")

    def stored_credential(self, plaintext: str) -> str:
        """``plaintext`` as ProxyWhirl's database stores it: ``encrypted:`` + base64 of a token."""
        token = self.token(plaintext).encode("ascii")
        return ENCRYPTED_PREFIX + base64.b64encode(token).decode("ascii")
