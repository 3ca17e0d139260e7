"""``restore config``: a verified ``pool_config`` export back into a ``proxywhirl.toml``."""

from __future__ import annotations

import copy
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
import yaml

from export_assets.lib.restore.verify import (
    RestoreError,
    check_references,
    credential_reader,
    verify_export,
)
from export_assets.lib.security.crypto import (
    DEFAULT_CONFIG_KEY_ENV,
    CredentialKeyError,
    config_cipher,
)
from export_assets.lib.security.policy import NOT_RECOVERABLE
from export_assets.lib.source.config import CREDENTIAL_KEYS, LOST_BY_SAVE_CONFIG

CONFIG_FORMATS = ("yaml", "json")
NEW_FILE_MODE = 0o600
REDACTED_MARKER = "redacted"


@dataclass
class ConfigDiff:
    """What a config restore does (or, dry, would do); never holds a credential."""

    target: Path
    created: bool
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        """One line: what was (or would be) written where."""
        verb = "would write" if self.dry_run else "wrote"
        return (
            f"{verb} {self.target}{' (new)' if self.created else ''}: {len(self.added)} "
            f"added, {len(self.changed)} changed, {len(self.removed)} removed"
        )

    def lines(self) -> list[str]:
        """The diff by setting (proxies by URL), then the notes."""
        return (
            [f"+ {key}" for key in self.added]
            + [f"~ {key}" for key in self.changed]
            + [f"- {key}" for key in self.removed]
            + [f"note: {note}" for note in self.notes]
        )


def restore_config(
    path: Path, target: Path, *, dry_run: bool = False, environ: Mapping[str, str] | None = None
) -> ConfigDiff:
    """Write the settings of a ``pool_config`` export to ``target`` as TOML ProxyWhirl loads.

    Credentials are decrypted from the export (or resolved from the environment) and
    encrypted under the key the config's ``encryption_key_env`` names when
    ``encrypt_credentials`` is true. Any failure leaves ``target`` as it was.
    """
    env = os.environ if environ is None else environ
    export = verify_export(path, "pool_config", CONFIG_FORMATS)
    try:
        with export.open_plain() as stream:
            text = stream.read().decode("utf-8")
        loaded = json.loads(text) if export.manifest.format == "json" else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise RestoreError(
            f"{export.data_file} does not parse as {export.manifest.format}: {exc}"
        ) from exc
    if not isinstance(loaded, dict):
        raise RestoreError(f"{export.data_file} holds no settings table: the file is damaged")
    settings: dict[str, Any] = loaded
    target = Path(target)
    if not target.parent.is_dir():
        raise RestoreError(f"{target.parent} does not exist: create the folder first")
    if target.is_dir():
        raise RestoreError(
            f"{target} is a folder: give the TOML file to write, e.g. {target / 'proxywhirl.toml'}"
        )
    diff = ConfigDiff(target, created=not target.exists(), dry_run=dry_run)
    _restore_credentials(settings, export.manifest.credential_policy, export, env, diff)
    document = _document_for(target, settings, export.manifest.source.get("config_table"))
    output = tomli_w.dumps(document)
    _check_loadable(output, document, target)
    before = _current_settings(target)
    _diff(before, settings, diff)
    if not dry_run:
        _write_private(target, output)
    return diff


def _write_private(target: Path, text: str) -> None:
    """Write ``target`` atomically: a new file 0600 (as ProxyWhirl's ``save_config``: it
    may hold a plaintext password), an existing one keeping its own mode."""
    partial = target.with_name(f".{target.name}.restoring-{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        if target.exists():
            os.chmod(partial, target.stat().st_mode & 0o777)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _restore_credentials(
    settings: dict[str, Any], policy: str, export: Any, env: Mapping[str, str], diff: ConfigDiff
) -> None:
    entries = settings.get("proxies")
    if not isinstance(entries, list):
        return
    read = credential_reader(export.manifest, env) if policy != "redact" else None
    if policy == "reference":
        check_references(
            [e.get(k) for e in entries if isinstance(e, dict) for k in CREDENTIAL_KEYS], env
        )
    variable = str(settings.get("encryption_key_env") or DEFAULT_CONFIG_KEY_ENV)
    encrypt = bool(settings.get("encrypt_credentials", False))
    try:
        cipher = None
        for entry in entries:
            if not isinstance(entry, dict):
                raise RestoreError("a [[proxies]] entry of the export is not a table: damaged file")
            url = str(entry.get("url", ""))
            marker = entry.pop("credentials", None)
            if marker == NOT_RECOVERABLE:
                # As the original file held it: ProxyWhirl 0.3.3's save_config lost the secret.
                entry.update(dict.fromkeys(CREDENTIAL_KEYS, LOST_BY_SAVE_CONFIG))
                diff.notes.append(f"{url}: credentials were not recoverable in the source file")
                continue
            if marker == REDACTED_MARKER:
                diff.notes.append(f"{url}: credentials were redacted in the export, not restored")
                continue
            for key in CREDENTIAL_KEYS:
                value = entry.get(key)
                if not isinstance(value, str):
                    continue
                assert read is not None
                clear = read(value, f"{key} of {url}")
                if encrypt:
                    cipher = cipher or config_cipher(variable, env)
                    clear = cipher.encrypt(clear.encode("utf-8")).decode("ascii")
                entry[key] = clear
    except CredentialKeyError as exc:
        raise RestoreError(str(exc)) from None


def _document_for(target: Path, settings: dict[str, Any], table: Any) -> dict[str, Any]:
    if target.name != "pyproject.toml":
        return settings
    # [tool.proxywhirl] in a project's pyproject.toml: the rest of the file is kept.
    document = _read_toml(target) if target.exists() else {}
    tool = document.setdefault("tool", {})
    if not isinstance(tool, dict):
        raise RestoreError(f"{target}: [tool] is not a table")
    tool["proxywhirl"] = settings
    return document


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RestoreError(f"{path} exists and is not valid TOML ({exc}): fix or move it") from exc
    except IsADirectoryError:
        raise RestoreError(f"{path} is a directory: give --to a file path") from None


def _current_settings(target: Path) -> dict[str, Any]:
    if not target.exists():
        return {}
    document = _read_toml(target)
    if target.name == "pyproject.toml":
        found = document.get("tool", {}).get("proxywhirl", {})
        return found if isinstance(found, dict) else {}
    return document


def _check_loadable(output: str, document: dict[str, Any], target: Path) -> None:
    """The TOML parses back to the same settings, in the shape ProxyWhirl's loader reads."""
    parsed = tomllib.loads(output)
    if parsed != document:
        raise RestoreError(f"the settings do not survive TOML for {target}: nothing was written")
    settings = (
        parsed.get("tool", {}).get("proxywhirl", {}) if target.name == "pyproject.toml" else parsed
    )
    proxies = settings.get("proxies", [])
    if not isinstance(proxies, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("url"), str) for entry in proxies
    ):
        raise RestoreError("proxies must be an array of tables with a url: the export is damaged")
    if "data_storage" in settings and not isinstance(settings["data_storage"], dict):
        raise RestoreError("data_storage must be a table: the export is damaged")


def _diff(before: dict[str, Any], after: dict[str, Any], diff: ConfigDiff) -> None:
    for key in sorted(set(before) | set(after)):
        if key == "proxies":
            continue
        if key not in before:
            diff.added.append(key)
        elif key not in after:
            diff.removed.append(key)
        elif before[key] != after[key]:
            diff.changed.append(key)
    old = {_url(e): e for e in before.get("proxies", []) if isinstance(e, dict)}
    new = {_url(e): e for e in after.get("proxies", []) if isinstance(e, dict)}
    for url in sorted(set(old) | set(new)):
        if url not in old:
            diff.added.append(f"proxies[{url}]")
        elif url not in new:
            diff.removed.append(f"proxies[{url}]")
        elif _without_secrets(old[url]) != _without_secrets(new[url]):
            diff.changed.append(f"proxies[{url}]")


def _url(entry: dict[str, Any]) -> str:
    return str(entry.get("url", ""))


def _without_secrets(entry: dict[str, Any]) -> dict[str, Any]:
    # Tokens differ on every encryption: compare whether credentials are there, not bytes.
    clean = copy.copy(entry)
    for key in CREDENTIAL_KEYS:
        if key in clean:
            clean[key] = "(set)"
    return clean
