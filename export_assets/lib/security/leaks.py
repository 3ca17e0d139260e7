"""The leak scanner: no credential the source knows, and no ``user:pass@``, in what we publish.

Known credentials are every username and password in ``proxy_identities`` (decrypted when
``PROXYWHIRL_CACHE_ENCRYPTION_KEY`` allows, and in their stored form) and in the config's
``[[proxies]]`` (decrypted under the key ``encryption_key_env`` names). A credential that
cannot be decrypted (key unset, not a key, or another key) is a :class:`CoverageGap`: its
clear text cannot be looked for, and callers say so loudly rather than pass. Files are streamed
and decoded the way a reader would see them: text line by line after decompression,
Parquet and xlsx cell by cell.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
import re
import sqlite3
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

import hyperscan
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from export_assets.lib.exports.export import Compression
from export_assets.lib.exports.memory import trim_heap
from export_assets.lib.exports.readers import decompressed, seekable_stream
from export_assets.lib.security.crypto import (
    CACHE_KEY_ENV,
    CACHE_PREVIOUS_KEY_ENV,
    DEFAULT_CONFIG_KEY_ENV,
    ENCRYPTED_PREFIX,
    EXPORT_KEY_ENV,
    EXPORT_PASSWORD_ENV,
    CredentialKeyError,
    config_cipher,
    decrypt_config_credential,
    decrypt_database_credential,
    proxywhirl_cipher,
)
from export_assets.lib.source.config import CREDENTIAL_KEYS, LOST_BY_SAVE_CONFIG, read_config
from export_assets.lib.source.database import SourceError, connect_read_only

if TYPE_CHECKING:
    from ahocorasick_rs import BytesAhoCorasick
    from cryptography.fernet import Fernet

# Shorter values (a one-letter username) would match everywhere; they are counted instead.
MIN_SECRET_LENGTH = 4
_CHUNK = 1 << 20
# scheme://user:pass@ with a non-empty user and password; our own mask (***:***) is allowed.
_URL_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)([^\s/?#@:\"'<>]+):([^\s/?#@\"'<>]+)@")
_URL_USERINFO_BYTES = re.compile(_URL_USERINFO.pattern.encode())
_MASKED_PART = "***"
# Text at least this long compiles the prefilter (Hyperscan: whether any secret is in it at
# all, a tenth of the automaton's time) if nothing did yet; shorter text goes straight to
# the automaton until it is compiled.
PREFILTER_MIN_BYTES = 64 << 10
KEY_VARIABLES = (CACHE_KEY_ENV, CACHE_PREVIOUS_KEY_ENV, EXPORT_KEY_ENV, EXPORT_PASSWORD_ENV)


@dataclass(frozen=True)
class CoverageGap:
    """Stored credentials whose clear text is unknown: looked for in stored form only."""

    source: str  # "database" or "config"
    variable: str  # the environment variable holding their key
    count: int
    problem: str  # why they could not be decrypted, naming the variable

    def message(self) -> str:
        """What happened and the fix, naming the variable (never a value)."""
        return (
            f"{self.count} {self.source} credential(s) could not be decrypted ({self.problem}): "
            "they were scanned for in their stored (encrypted) form only, so their clear text "
            f"would leak unnoticed. Fix: set {self.variable} to the deployment's key (a "
            "sample deployment's keys are in its .env, e.g. data/proxywhirl/.env) and run again"
        )


@dataclass
class KnownCredentials:
    """The secrets a deployment holds, and what could not be read (never the secrets)."""

    secrets: set[str] = field(default_factory=set)
    too_short: int = 0
    notes: list[str] = field(default_factory=list)
    credentials: int = 0  # credential values read from the database and the config
    gaps: list[CoverageGap] = field(default_factory=list)

    @property
    def undecrypted(self) -> int:
        """How many stored credentials could not be decrypted."""
        return sum(gap.count for gap in self.gaps)

    def add(self, value: str) -> None:
        """Add a secret (and its stored forms: the token inside ``encrypted:``)."""
        if not value or value == LOST_BY_SAVE_CONFIG:
            return
        forms = {value}
        if value.startswith(ENCRYPTED_PREFIX):
            forms.add(value[len(ENCRYPTED_PREFIX) :])
        for form in forms:
            if len(form) < MIN_SECRET_LENGTH:
                self.too_short += 1
            else:
                self.secrets.add(form)


def known_credentials(
    database: Path | None, config_path: Path | None, environ: Mapping[str, str] | None = None
) -> KnownCredentials:
    """Every credential in the deployment's database and config that can be read."""
    env = os.environ if environ is None else environ
    known = KnownCredentials()
    if database is not None and database.is_file():
        _database_credentials(database, env, known)
    elif database is not None:
        known.notes.append(f"database {database} not found: its credentials were not scanned for")
    if config_path is not None and config_path.is_file():
        _config_credentials(config_path, env, known)
        variable = _config_key_variable(config_path)
        if env.get(variable):
            known.add(env[variable])
    elif config_path is not None:
        known.notes.append(f"config {config_path} not found: its credentials were not scanned for")
    # The keys themselves must never be published either.
    for variable in KEY_VARIABLES:
        if env.get(variable):
            known.add(env[variable])
    return known


def _config_key_variable(path: Path) -> str:
    try:
        settings = read_config(path).settings
    except SourceError:
        return DEFAULT_CONFIG_KEY_ENV
    return str(settings.get("encryption_key_env") or DEFAULT_CONFIG_KEY_ENV)


def _database_credentials(database: Path, env: Mapping[str, str], known: KnownCredentials) -> None:
    key_problem = None
    try:
        cipher = proxywhirl_cipher(env)
    except CredentialKeyError as exc:  # set, but not a Fernet key
        cipher = None
        key_problem = str(exc).split(":", 1)[0]
    if cipher is None and key_problem is None:
        key_problem = f"{CACHE_KEY_ENV} is not set"
    try:
        connection = connect_read_only(database, 30_000)
        try:
            rows = connection.execute(
                "SELECT url, username, password FROM proxy_identities"
                " WHERE username IS NOT NULL OR password IS NOT NULL"
            ).fetchall()
        finally:
            connection.close()
    except (sqlite3.Error, SourceError) as exc:
        known.notes.append(f"cannot read credentials from {database}: {exc}")
        return
    undecrypted = 0
    for url, *values in rows:
        for column, value in zip(CREDENTIAL_KEYS, values, strict=True):
            if value is None:
                continue
            known.credentials += 1
            known.add(str(value))
            try:
                known.add(decrypt_database_credential(str(value), cipher, f"{column} of {url}"))
            except CredentialKeyError:
                undecrypted += 1
    if undecrypted:
        problem = (
            key_problem
            if cipher is None
            else (
                f"they do not decrypt with {CACHE_KEY_ENV} (nor {CACHE_PREVIOUS_KEY_ENV}): another "
                "deployment's key, or a rotated one"
            )
        )
        # The variable to fix: the previous key when it is the one that is not a key.
        wrong = str(key_problem or "").startswith(CACHE_PREVIOUS_KEY_ENV) and cipher is None
        variable = CACHE_PREVIOUS_KEY_ENV if wrong else CACHE_KEY_ENV
        known.gaps.append(CoverageGap("database", variable, undecrypted, str(problem)))


def _config_credentials(path: Path, env: Mapping[str, str], known: KnownCredentials) -> None:
    try:
        settings = read_config(path).settings
    except SourceError as exc:
        known.notes.append(str(exc))
        return
    entries = settings.get("proxies")
    if not isinstance(entries, list):
        return
    variable = str(settings.get("encryption_key_env") or DEFAULT_CONFIG_KEY_ENV)
    encrypted = bool(settings.get("encrypt_credentials", False))
    cipher: Fernet | None = None
    key_problem = None
    if encrypted:
        try:
            cipher = config_cipher(variable, env)
        except CredentialKeyError:
            key_problem = (
                f"{variable} is not a Fernet key" if env.get(variable) else f"{variable} is not set"
            )
    undecrypted = 0
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for key in CREDENTIAL_KEYS:
            value = entry.get(key)
            if not isinstance(value, str) or value == LOST_BY_SAVE_CONFIG:
                continue
            known.credentials += 1
            known.add(value)
            if not encrypted:
                continue
            if cipher is None:
                undecrypted += 1
                continue
            try:
                known.add(decrypt_config_credential(value, cipher, variable, key))
            except CredentialKeyError:
                undecrypted += 1
    if undecrypted:
        problem = key_problem or (
            f"they do not decrypt with {variable}, the config's encryption_key_env: another key"
        )
        known.gaps.append(CoverageGap("config", variable, undecrypted, problem))


def mask_secret(value: str) -> str:
    """A secret as a finding shows it: its first character and its length."""
    return f"{value[:1]}{'*' * 7} ({len(value)} chars)"


def _variants(secret: str) -> set[str]:
    # How a secret looks once a writer escaped it: JSON, CSV's doubled quote, YAML's
    # doubled apostrophe, URL percent-encoding.
    return {
        secret,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        json.dumps(secret)[1:-1],
        secret.replace('"', '""'),
        secret.replace("'", "''"),
        quote(secret, safe=""),
    }


@dataclass(frozen=True)
class Finding:
    """One leak: where it is and what it is (masked)."""

    file: str
    line: str  # a line number, or sheet!row / row:column for tabular files
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.what}"


_PREFILTERS: OrderedDict[bytes, hyperscan.Database | None] = OrderedDict()
_PREFILTERS_LOCK = threading.Lock()
_PREFILTERS_KEPT = 4  # sets of secrets whose database is kept (a process serves one deployment)


class _Prefilter:
    """Whether any of ``patterns`` is in a text: a Hyperscan literal database, compiled once
    and shared by the scanners of a process that look for the same secrets."""

    def __init__(self, patterns: list[bytes]) -> None:
        # Hyperscan's binding reads a literal up to its first NUL byte: a form holding one is
        # looked for by its longest NUL-free part, which is in the text wherever it is.
        self._literals = sorted({max(pattern.split(b"\0"), key=len) for pattern in patterns})
        self._key = hashlib.sha256(b"\0".join(self._literals)).digest()
        self._local = threading.local()  # a scratch space per scanning thread

    @property
    def compiled(self) -> bool:
        return self._key in _PREFILTERS

    def compile_in_background(self) -> None:
        if not self.compiled:
            threading.Thread(target=self._database, name="leak-scan prefilter", daemon=True).start()

    def matches(self, data: bytes) -> bool:
        database = self._database()
        if database is None:
            return True  # no prefilter: the automaton looks
        # A scratch space is made for one database (a database dropped from the cache and
        # compiled again is another one).
        made: tuple[hyperscan.Database, hyperscan.Scratch] | None = getattr(
            self._local, "scratch", None
        )
        if made is None or made[0] is not database:
            made = self._local.scratch = (database, hyperscan.Scratch(database))
        scratch = made[1]
        try:
            database.scan(data, match_event_handler=_stop, scratch=scratch)
        except hyperscan.ScanTerminated:
            return True
        return False

    def _database(self) -> hyperscan.Database | None:
        with _PREFILTERS_LOCK:  # a scan waits here for a compile in progress
            if self._key in _PREFILTERS:
                _PREFILTERS.move_to_end(self._key)
                return _PREFILTERS[self._key]
            database: hyperscan.Database | None = None
            if all(self._literals):  # an empty part would match everywhere
                try:
                    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
                    database.compile(
                        expressions=self._literals,
                        ids=list(range(len(self._literals))),
                        elements=len(self._literals),
                        flags=hyperscan.HS_FLAG_SINGLEMATCH,
                        literal=True,
                    )
                except hyperscan.error:  # a CPU Hyperscan does not support: no prefilter
                    database = None
                trim_heap()  # the compiler's working memory (~10 MiB for 3,000 secrets)
            _PREFILTERS[self._key] = database
            while len(_PREFILTERS) > _PREFILTERS_KEPT:
                _PREFILTERS.popitem(last=False)
            return database


def _stop(*_: object) -> bool:
    """Hyperscan's match handler: the first match ends the scan."""
    return True


class LeakScanner:
    """Finds known credentials and ``scheme://user:pass@`` in text, files and streams.

    Known credentials are found by an Aho-Corasick automaton (leftmost-longest, not
    overlapping: one finding per place a secret stands). Text is first scanned by Hyperscan
    for whether any secret is in it at all, about ten times faster than the automaton (0.07 s
    against 0.9 s for the 1M-row day's 107 MB of CSV and 3,208 secret forms), and only text
    where it finds one goes through the automaton, so what is found, and how it is said, does
    not depend on the prefilter. Its database is compiled once per process and set of
    secrets (~0.1 s): by :meth:`prepare`, or by the first text of ``PREFILTER_MIN_BYTES`` or
    more; shorter text goes straight to the automaton until then. The automaton is built
    when first needed (~3 MiB for 3,000 secrets).
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        original: dict[bytes, str] = {}
        for secret in secrets:
            for variant in _variants(secret):
                if len(variant) >= MIN_SECRET_LENGTH:
                    original.setdefault(variant.encode("utf-8", "surrogatepass"), secret)
        self._patterns = list(original)
        self._secrets = [original[pattern] for pattern in self._patterns]
        self._automaton: BytesAhoCorasick | None = None
        self._prefilter = _Prefilter(self._patterns) if self._patterns else None

    def prepare(self) -> None:
        """Compile the prefilter now, on a thread of its own: before an export streams, so
        the compiler's working memory comes and goes before the stream's."""
        if self._prefilter is not None:
            self._prefilter.compile_in_background()

    def may_hold_secret(self, data: bytes) -> bool:
        """False when no known credential is in ``data`` (the automaton need not look)."""
        if self._prefilter is None:
            return False
        if len(data) < PREFILTER_MIN_BYTES and not self._prefilter.compiled:
            return True
        return self._prefilter.matches(data)

    def _matches(self, data: bytes) -> list[tuple[int, int, int]]:
        if self._automaton is None:
            from ahocorasick_rs import BytesAhoCorasick, MatchKind  # only once text may leak

            self._automaton = BytesAhoCorasick(self._patterns, matchkind=MatchKind.LeftmostLongest)
        matches: list[tuple[int, int, int]] = self._automaton.find_matches_as_indexes(data)
        return matches

    def scan_text(self, text: str) -> Iterator[str]:
        """What leaks in ``text``, described with the secret masked."""
        for _, what in self.leaks(text.encode("utf-8", "surrogatepass")):
            yield what

    def leaks(self, data: bytes) -> list[tuple[int, str]]:
        """Each leak in UTF-8 ``data``: the byte offset where it starts, and what it is
        (masked); in order."""
        found: list[tuple[int, str]] = []
        if self.may_hold_secret(data):
            for index, start, _ in self._matches(data):
                found.append((start, f"credential {mask_secret(self._secrets[index])}"))
        # A URL's user:password ends at an "@" and holds no whitespace: only the stretch of
        # line before each "@" is matched (data with masked URLs has one every row).
        scanned = 0
        at = data.find(b"@")
        while at != -1:
            line_start = data.rfind(b"\n", scanned, at) + 1
            for match in _URL_USERINFO_BYTES.finditer(data, max(scanned, line_start), at + 1):
                user = match.group(2).decode("utf-8", "replace")
                password = match.group(3).decode("utf-8", "replace")
                if user == _MASKED_PART and password == _MASKED_PART:
                    continue
                if user.startswith("${") or password.startswith("${"):
                    continue  # a reference placeholder, not a secret
                scheme = match.group(1).decode("ascii")
                # Said without user:***@, which would be a finding of its own in a log.
                found.append((match.start(), f"URL with a password: {scheme}{mask_secret(user)}"))
            scanned = at + 1
            at = data.find(b"@", scanned)
        found.sort(key=lambda leak: leak[0])
        return found

    def scan_stream(self, name: str, stream: BinaryIO) -> list[Finding]:
        """Scan one published file, decoded as its name says (``x.csv.gz``, ``x.parquet``)."""
        base, compression = _split_compression(name)
        findings: list[Finding] = []
        try:
            with decompressed(compression, stream, name) as plain:
                if base.endswith(".parquet"):
                    with seekable_stream(plain) as whole:
                        findings += self._scan_parquet(name, whole)
                elif base.endswith(".xlsx"):
                    with seekable_stream(plain) as whole:
                        findings += self._scan_xlsx(name, whole)
                else:
                    findings += self._scan_lines(name, plain)
        except (
            OSError,
            EOFError,
            ValueError,
            zipfile.BadZipFile,
            zstandard.ZstdError,
            pa.ArrowException,
        ) as exc:
            # An unreadable file cannot be proven clean.
            findings.append(Finding(name, "-", f"cannot be read to scan it: {exc}"))
        return findings

    def scan_path(self, path: Path, shown: str | None = None) -> list[Finding]:
        """Scan one local file."""
        with path.open("rb") as stream:
            return self.scan_stream(shown or str(path), stream)

    def _scan_lines(self, name: str, stream: BinaryIO) -> Iterator[Finding]:
        # Whole lines, about a chunk at a time: one scan per chunk, line numbers worked out
        # only for what is found.
        first_line = 1
        while lines := stream.readlines(_CHUNK):
            leaks = self.leaks(b"".join(lines))
            if leaks:
                starts = list(itertools.accumulate((len(line) for line in lines), initial=0))
                for position, what in leaks:
                    number = first_line + bisect.bisect_right(starts, position) - 1
                    yield Finding(name, str(number), what)
            first_line += len(lines)

    def _scan_parquet(self, name: str, stream: IO[bytes]) -> Iterator[Finding]:
        import pyarrow.parquet as pq  # only Parquet files need it (and pyarrow.fs with it)

        row = 0
        for batch in pq.ParquetFile(stream).iter_batches(batch_size=65536):
            for column_name, column in zip(batch.schema.names, batch.columns, strict=True):
                if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                    continue
                # One value a line (a value's own line breaks made spaces, so the count holds).
                values = pc.replace_substring_regex(
                    pc.fill_null(column, ""), pattern="[\r\n]", replacement=" "
                ).to_pylist()
                whole = "\n".join(values).encode("utf-8", "surrogatepass")
                for position, what in self.leaks(whole):
                    offset = whole.count(b"\n", 0, position)
                    yield Finding(name, f"row {row + offset + 1} column {column_name}", what)
            row += batch.num_rows

    def _scan_xlsx(self, name: str, stream: IO[bytes]) -> Iterator[Finding]:
        from openpyxl import load_workbook  # ~0.2 s: only when a workbook is scanned

        workbook = load_workbook(stream, read_only=True)
        try:
            for sheet in workbook.worksheets:
                for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
                    for value in row:
                        if isinstance(value, str):
                            for what in self.scan_text(value):
                                yield Finding(name, f"{sheet.title}!{number}", what)
        finally:
            workbook.close()


def _split_compression(name: str) -> tuple[str, Compression]:
    suffixes: tuple[tuple[str, Compression], ...] = (
        (".gz", "gzip"),
        (".zst", "zstd"),
        (".zip", "zip"),
    )
    for suffix, compression in suffixes:
        if name.endswith(suffix):
            return name.removesuffix(suffix), compression
    return name, "none"


SCANNED_SUFFIXES = (
    ".csv",
    ".jsonl",
    ".json",
    ".txt",
    ".yaml",
    ".yml",
    ".parquet",
    ".xlsx",
    ".pdf",
    ".log",
    ".toml",
)


def files_to_scan(paths: Iterable[Path]) -> Iterator[Path]:
    """The files of ``paths``: files as given, folders walked (exports and manifests)."""
    for path in paths:
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.is_file() and _split_compression(found.name)[0].endswith(SCANNED_SUFFIXES):
                    yield found
        else:
            yield path


def scan_metadata(scanner: LeakScanner, where: str, values: Mapping[str, Any]) -> list[Finding]:
    """Scan materialization metadata (or any mapping) rendered as text."""
    findings = []
    for key, value in values.items():
        for what in scanner.scan_text(f"{key}={getattr(value, 'value', value)!s}"):
            findings.append(Finding(where, key, what))
    return findings
