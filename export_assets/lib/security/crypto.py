"""Credential cryptography: ProxyWhirl's Fernet forms, the export key, scrypt, key ids.

Keys and passwords are read only from the environment (or values Dagster resolved from an
``EnvVar``); errors name the variable, never its value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# cryptography is imported where a key is used, not when the code location loads.
if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

ENCRYPTED_PREFIX = "encrypted:"  # how ProxyWhirl marks an encrypted database credential
CACHE_KEY_ENV = "PROXYWHIRL_CACHE_ENCRYPTION_KEY"
CACHE_PREVIOUS_KEY_ENV = "PROXYWHIRL_CACHE_KEY_PREVIOUS"
EXPORT_KEY_ENV = "EXPORT_ENCRYPTION_KEY"
EXPORT_PASSWORD_ENV = "EXPORT_PASSWORD"  # noqa: S105 - a variable's name, not a password
DEFAULT_CONFIG_KEY_ENV = "PROXYWHIRL_KEY"

# scrypt cost: 2**15 x 8 x 1 takes ~0.1 s and 32 MiB, OWASP's recommended minimum.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16

REFERENCE_PATTERN = re.compile(r"^\$\{(PROXYWHIRL_CRED_[0-9A-F]{12}_(?:USERNAME|PASSWORD))\}$")


class CredentialKeyError(ValueError):
    """A key or password is missing or wrong; the message names the variable, not the value."""


def fingerprint(key: bytes) -> str:
    """A key id: identifies a Fernet key without revealing it (sha256 of a labelled key)."""
    return "sha256:" + hashlib.sha256(b"export_assets key id\0" + key).hexdigest()[:16]


def _fernet(value: str, variable: str) -> Fernet:
    from cryptography.fernet import Fernet

    try:
        return Fernet(value.strip().encode("ascii"))
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise CredentialKeyError(
            f"{variable} is not a Fernet key (url-safe base64 of 32 bytes): generate one with "
            "`python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`"
        ) from None


def proxywhirl_cipher(environ: Mapping[str, str] | None = None) -> MultiFernet | None:
    """ProxyWhirl's database cipher (current key, then the previous one), or None if unset."""
    env = os.environ if environ is None else environ
    if not env.get(CACHE_KEY_ENV):
        return None
    from cryptography.fernet import MultiFernet

    keys = [_fernet(env[CACHE_KEY_ENV], CACHE_KEY_ENV)]
    if env.get(CACHE_PREVIOUS_KEY_ENV):
        keys.append(_fernet(env[CACHE_PREVIOUS_KEY_ENV], CACHE_PREVIOUS_KEY_ENV))
    return MultiFernet(keys)


def is_encrypted_credential(value: str) -> bool:
    """Whether a database credential is in ProxyWhirl's ``encrypted:`` form."""
    return value.startswith(ENCRYPTED_PREFIX)


def decrypt_database_credential(value: str, cipher: MultiFernet | None, where: str) -> str:
    """The clear text of a ``proxy_identities`` credential (legacy plain values as they are).

    Raises ``CredentialKeyError`` naming the variable when the key is missing or wrong: a
    ciphertext is never passed on as if it were the credential.
    """
    if not is_encrypted_credential(value):
        return value
    if cipher is None:
        raise CredentialKeyError(
            f"{where} is encrypted but {CACHE_KEY_ENV} is not set: set it to the ProxyWhirl "
            "deployment's key"
        )
    from cryptography.fernet import InvalidToken

    try:
        token = base64.b64decode(value[len(ENCRYPTED_PREFIX) :], validate=True)
        return cipher.decrypt(token).decode("utf-8")
    except (InvalidToken, binascii.Error, ValueError):
        raise CredentialKeyError(
            f"{where} does not decrypt with {CACHE_KEY_ENV} (or {CACHE_PREVIOUS_KEY_ENV}): is "
            "it the deployment's key? After a key rotation, set the old key in "
            f"{CACHE_PREVIOUS_KEY_ENV}"
        ) from None


def encrypt_database_credential(value: str, cipher: Fernet | MultiFernet) -> str:
    """``value`` the way ProxyWhirl stores it: ``encrypted:`` + standard base64 of a token."""
    token = cipher.encrypt(value.encode("utf-8"))
    return ENCRYPTED_PREFIX + base64.b64encode(token).decode("ascii")


def config_cipher(variable: str, environ: Mapping[str, str] | None = None) -> Fernet:
    """The Fernet key of a config's credentials, from the variable ``encryption_key_env`` names."""
    env = os.environ if environ is None else environ
    if not env.get(variable):
        raise CredentialKeyError(
            f"the config's credentials are encrypted under {variable} (its encryption_key_env), "
            f"which is not set: set {variable} to ProxyWhirl's config key"
        )
    return _fernet(env[variable], variable)


def decrypt_config_credential(value: str, cipher: Fernet, variable: str, where: str) -> str:
    """The clear text of a ``[[proxies]]`` credential (a raw Fernet token)."""
    from cryptography.fernet import InvalidToken

    try:
        return cipher.decrypt(value.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeEncodeError):
        raise CredentialKeyError(
            f"{where} does not decrypt with {variable}: is it the key ProxyWhirl's config uses?"
        ) from None


@dataclass(frozen=True)
class ExportCipher:
    """The key an export's credentials are encrypted with, and what the manifest records."""

    fernet: Fernet
    key_id: str
    kdf: dict[str, Any] | None  # scrypt parameters and salt when derived from a password

    def encrypt(self, value: str) -> str:
        """A Fernet token (url-safe base64 text) of ``value``."""
        return self.fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, where: str) -> str:
        """The clear text of a token this export holds."""
        from cryptography.fernet import InvalidToken

        try:
            return self.fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeEncodeError):
            raise CredentialKeyError(
                f"{where} does not decrypt with the export key ({self.key_id}): the file was "
                "changed or encrypted with another key"
            ) from None

    def manifest_record(self) -> dict[str, Any]:
        """What the manifest records: the cipher, the key id, the KDF; never the key."""
        return {"cipher": "fernet", "key_id": self.key_id, "kdf": self.kdf}


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    raw = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode("utf-8"))
    return base64.urlsafe_b64encode(raw)


def export_cipher_for_writing(environ: Mapping[str, str] | None = None) -> ExportCipher:
    """The export key: ``EXPORT_ENCRYPTION_KEY``, else a fresh salt + ``EXPORT_PASSWORD``."""
    from cryptography.fernet import Fernet

    env = os.environ if environ is None else environ
    if env.get(EXPORT_KEY_ENV):
        fernet = _fernet(env[EXPORT_KEY_ENV], EXPORT_KEY_ENV)
        return ExportCipher(fernet, fingerprint(env[EXPORT_KEY_ENV].strip().encode()), None)
    if env.get(EXPORT_PASSWORD_ENV):
        salt = os.urandom(SALT_BYTES)
        key = _scrypt(env[EXPORT_PASSWORD_ENV], salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        kdf = {
            "name": "scrypt",
            "n": SCRYPT_N,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "length": 32,
            "salt": base64.b64encode(salt).decode("ascii"),
        }
        return ExportCipher(Fernet(key), fingerprint(key), kdf)
    raise CredentialKeyError(
        f"credentials policy encrypt needs {EXPORT_KEY_ENV} (a Fernet key) or "
        f"{EXPORT_PASSWORD_ENV} in the environment; neither is set"
    )


def export_cipher_for_reading(
    record: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> ExportCipher:
    """The export key an encrypted export names in its manifest, checked against its key id."""
    from cryptography.exceptions import InvalidKey
    from cryptography.fernet import Fernet

    env = os.environ if environ is None else environ
    key_id = str(record.get("key_id", ""))
    kdf = record.get("kdf")
    if kdf:
        if not env.get(EXPORT_PASSWORD_ENV):
            raise CredentialKeyError(
                f"this export was encrypted with a password (key id {key_id}) but "
                f"{EXPORT_PASSWORD_ENV} is not set: set it to the export's password"
            )
        try:
            salt = base64.b64decode(str(kdf["salt"]), validate=True)
            key = _scrypt(
                env[EXPORT_PASSWORD_ENV], salt, int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            )
        except (KeyError, TypeError, ValueError, binascii.Error, InvalidKey) as exc:
            raise CredentialKeyError(f"the manifest's kdf record is damaged: {exc}") from None
        if fingerprint(key) != key_id:
            raise CredentialKeyError(
                f"{EXPORT_PASSWORD_ENV} is not the password this export was encrypted with "
                f"(key id {key_id}): set it to that password"
            )
        return ExportCipher(Fernet(key), key_id, dict(kdf))
    if not env.get(EXPORT_KEY_ENV):
        raise CredentialKeyError(
            f"this export was encrypted with a key (key id {key_id}) but {EXPORT_KEY_ENV} is not "
            "set: set it to the export's Fernet key"
        )
    fernet = _fernet(env[EXPORT_KEY_ENV], EXPORT_KEY_ENV)
    if fingerprint(env[EXPORT_KEY_ENV].strip().encode()) != key_id:
        raise CredentialKeyError(
            f"{EXPORT_KEY_ENV} is not the key this export was encrypted with (key id {key_id}): "
            "set it to that key"
        )
    return ExportCipher(fernet, key_id, None)


def reference_id(url: str) -> str:
    """The stable id of a proxy's credential placeholders (from its URL)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:12].upper()


def reference(url: str, column: str) -> str:
    """``${PROXYWHIRL_CRED_<id>_USERNAME}``: a placeholder restore resolves from the environment."""
    return f"${{PROXYWHIRL_CRED_{reference_id(url)}_{column.upper()}}}"


def resolve_reference(value: str, environ: Mapping[str, str] | None = None) -> str:
    """The credential a placeholder names, from the environment."""
    env = os.environ if environ is None else environ
    match = REFERENCE_PATTERN.match(value)
    if match is None:
        raise CredentialKeyError(
            f"{value[:60]!r} is not a credential placeholder (${{PROXYWHIRL_CRED_<id>_USERNAME}})"
        )
    if match.group(1) not in env:
        raise CredentialKeyError(
            f"{match.group(1)} is not set: a reference export's credentials come from the "
            "environment at restore time"
        )
    return env[match.group(1)]
