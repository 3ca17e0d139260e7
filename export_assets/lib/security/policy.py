"""Credential policies of exports that can carry credentials: redact, encrypt, reference."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from export_assets.lib.exports.export import CredentialPolicy
from export_assets.lib.security.credentials import mask_url_credentials
from export_assets.lib.security.crypto import (
    DEFAULT_CONFIG_KEY_ENV,
    ExportCipher,
    config_cipher,
    decrypt_config_credential,
    decrypt_database_credential,
    export_cipher_for_writing,
    proxywhirl_cipher,
    reference,
)
from export_assets.lib.source.config import CREDENTIAL_KEYS, LOST_BY_SAVE_CONFIG
from export_assets.lib.source.database import SourceSnapshot

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

CREDENTIAL_COLUMNS = ("username", "password")
# What a config export says where ProxyWhirl 0.3.3's save_config wrote asterisks.
NOT_RECOVERABLE = "not recoverable from the file"
CREDENTIAL_FIELDS = [pa.field(name, pa.string()) for name in CREDENTIAL_COLUMNS]

CREDENTIALS_DESCRIPTION = (
    "What happens to proxy credentials: redact (default: removed, user:pass@ in URLs masked), "
    "encrypt (re-encrypted with EXPORT_ENCRYPTION_KEY, or a key derived from EXPORT_PASSWORD "
    "with scrypt; the manifest records the key id) or reference (placeholders such as "
    "${PROXYWHIRL_CRED_<id>_USERNAME} that restore resolves from the environment). Keys come "
    "only from the environment."
)


class CredentialChoice(StrEnum):
    """The credential policy as a launchpad choice."""

    redact = "redact"
    encrypt = "encrypt"
    reference = "reference"


@dataclass(frozen=True)
class CredentialProtection:
    """One run's policy, with the export key when it encrypts."""

    policy: CredentialPolicy
    cipher: ExportCipher | None = None

    def protect(self, url: str, column: str, clear: str | None) -> str | None:
        """What the export holds for one credential."""
        if clear is None or self.policy == "redact":
            return None
        if self.policy == "reference":
            return reference(url, column)
        assert self.cipher is not None
        return self.cipher.encrypt(clear)

    @property
    def encryption(self) -> dict[str, Any] | None:
        """The manifest's record of the key (id and KDF, never the key)."""
        return None if self.cipher is None else self.cipher.manifest_record()


def credential_protection(
    policy: CredentialPolicy, environ: Mapping[str, str] | None = None
) -> CredentialProtection:
    """The policy, with its key read from the environment (fails early when it is missing)."""
    if policy == "encrypt":
        return CredentialProtection(policy, export_cipher_for_writing(environ))
    return CredentialProtection(policy)


def pool_schema(
    base: pa.Schema, policy: CredentialPolicy, fields: Sequence[str] | None
) -> pa.Schema:
    """The pool's schema: with credential columns unless redacted and not asked for by name."""
    if policy == "redact" and not set(CREDENTIAL_COLUMNS) & set(fields or ()):
        return base
    return pa.schema([*base, *CREDENTIAL_FIELDS])


def database_credentials(
    snapshot: SourceSnapshot,
    protection: CredentialProtection,
    environ: Mapping[str, str] | None = None,
) -> dict[str, tuple[str | None, str | None]]:
    """Each credentialed proxy's username and password as the export holds them.

    Under ``encrypt`` the values are decrypted from ProxyWhirl's form (a missing or wrong
    ``PROXYWHIRL_CACHE_ENCRYPTION_KEY`` fails here) and re-encrypted with the export key.
    """
    if protection.policy == "redact":
        return {}
    cipher = proxywhirl_cipher(environ) if protection.policy == "encrypt" else None
    found: dict[str, tuple[str | None, str | None]] = {}
    rows = snapshot.execute(
        "SELECT url, username, password FROM proxy_identities"
        " WHERE username IS NOT NULL OR password IS NOT NULL"
    )
    for url, *values in rows:
        clear: list[str | None] = []
        for column, value in zip(CREDENTIAL_COLUMNS, values, strict=True):
            if value is None or protection.policy == "reference":
                clear.append(value)
            else:
                where = f"proxy_identities.{column} of {mask_url_credentials(url)}"
                clear.append(decrypt_database_credential(str(value), cipher, where))
        found[url] = (
            protection.protect(url, "username", clear[0]),
            protection.protect(url, "password", clear[1]),
        )
    return found


def with_credentials(
    batches: Iterator[pa.RecordBatch],
    schema: pa.Schema,
    credentials: Mapping[str, tuple[str | None, str | None]],
) -> Iterator[pa.RecordBatch]:
    """Pool batches with the credential columns ``schema`` adds (null where none)."""
    for batch in batches:
        if batch.schema.equals(schema):
            yield batch
            continue
        urls = batch.column("url").to_pylist()
        pairs = [credentials.get(url, (None, None)) for url in urls]
        columns = [
            *batch.columns,
            pa.array([pair[0] for pair in pairs], pa.string()),
            pa.array([pair[1] for pair in pairs], pa.string()),
        ]
        yield pa.RecordBatch.from_arrays(columns, schema=schema)


def config_credentials(
    settings: dict[str, Any],
    protection: CredentialProtection,
    environ: Mapping[str, str] | None = None,
) -> tuple[int, list[str]]:
    """Protect the ``[[proxies]]`` credentials of ``settings`` in place (encrypt, reference).

    Returns how many entries were protected and the URLs of those whose credentials
    ProxyWhirl 0.3.3's ``save_config`` lost (kept as its asterisks: nothing to protect).
    """
    env = os.environ if environ is None else environ
    entries = settings.get("proxies")
    if not isinstance(entries, list):
        return 0, []
    encrypted = bool(settings.get("encrypt_credentials", False))
    variable = str(settings.get("encryption_key_env") or DEFAULT_CONFIG_KEY_ENV)
    cipher: Fernet | None = None
    protected = 0
    lost: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or not any(key in entry for key in CREDENTIAL_KEYS):
            continue
        url = str(entry.get("url", ""))
        if any(entry.get(key) == LOST_BY_SAVE_CONFIG for key in CREDENTIAL_KEYS):
            for key in CREDENTIAL_KEYS:
                entry.pop(key, None)
            entry["credentials"] = NOT_RECOVERABLE
            lost.append(url)
            continue
        for key in CREDENTIAL_KEYS:
            value = entry.get(key)
            if value is None:
                continue
            clear = str(value)
            if protection.policy == "encrypt" and encrypted:
                cipher = cipher or config_cipher(variable, env)
                clear = decrypt_config_credential(clear, cipher, variable, f"{key} of {url}")
            entry[key] = protection.protect(url, key, clear)
        protected += 1
    return protected, lost
