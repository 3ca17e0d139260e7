"""A deterministic sample ProxyWhirl deployment: database, logs, config and ``.env``."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from export_assets.lib.sample.config import CACHE_KEY_ENV, CONFIG_KEY_ENV, write_config, write_env
from export_assets.lib.sample.database import write_database
from export_assets.lib.sample.history import ValidationHistory
from export_assets.lib.sample.keys import SampleCipher, derive_fernet_key
from export_assets.lib.sample.logs import LOG_STEM, write_logs
from export_assets.lib.sample.pool import build_pool

DATABASE_NAME = "proxies.db"
LOG_DIR_NAME = "logs"
CONFIG_NAME = "proxywhirl.toml"
ENV_NAME = ".env"
MAX_DAYS = 3660
# Discovery times reach 31 days before the first day; zip entries cannot predate 1980.
_EARLIEST_FIRST_DAY = date(1980, 2, 1)
_LATEST_END_DATE = date(9999, 12, 30)


@dataclass(frozen=True)
class SampleDeployment:
    """Where a sample deployment was written, its keys, and how much it holds."""

    root: Path
    database: Path
    log_dir: Path
    config_path: Path
    env_file: Path
    cache_encryption_key: str  # PROXYWHIRL_CACHE_ENCRYPTION_KEY: credentials in proxies.db
    config_encryption_key: str  # PROXYWHIRL_KEY: credentials in proxywhirl.toml
    first_day: date
    last_day: date
    proxies: int
    validations: int
    log_records: int  # complete JSON records (malformed and partial lines not counted)


def write_sample_deployment(
    out: Path,
    *,
    proxies: int = 300,
    days: int = 14,
    end_date: date,
    validations_per_day: int = 2000,
    seed: int = 7,
) -> SampleDeployment:
    """Write a sample deployment under ``out``; the same arguments give byte-identical files.

    Refuses to write over any file of an existing deployment. ``days`` days of history end
    with ``end_date`` (UTC); each day has ``validations_per_day`` checks.
    """
    _check_arguments(proxies, days, end_date, validations_per_day, seed)
    root = Path(out).expanduser().absolute()
    sample = SampleDeployment(
        root=root,
        database=root / DATABASE_NAME,
        log_dir=root / LOG_DIR_NAME,
        config_path=root / CONFIG_NAME,
        env_file=root / ENV_NAME,
        cache_encryption_key="",
        config_encryption_key="",
        first_day=end_date - timedelta(days=days - 1),
        last_day=end_date,
        proxies=proxies,
        validations=0,
        log_records=0,
    )
    _refuse_existing(sample)
    created: list[Path] = [] if root.exists() else [root]
    root.mkdir(parents=True, exist_ok=True)

    # One independent stream per part, so that changing the logs does not reshuffle the pool.
    def stream(part: str) -> random.Random:
        return random.Random(f"proxywhirl-sample/{seed}/{part}")

    keys = stream("keys")
    cache_key, config_key = derive_fernet_key(keys), derive_fernet_key(keys)
    # Tokens carry their creation time; a fixed one (the end date) keeps the sample reproducible.
    issued_at = int(datetime.combine(end_date, datetime.min.time(), tzinfo=UTC).timestamp())
    pool = build_pool(
        stream("pool"),
        proxies,
        sample.first_day,
        sample.last_day,
        SampleCipher(cache_key, stream("cache-iv"), issued_at),
    )
    history = ValidationHistory(
        stream("history"), pool, sample.first_day, days, validations_per_day
    )

    partial = root / f".{DATABASE_NAME}.partial"
    try:
        partial.unlink(missing_ok=True)  # debris of an interrupted run: ours by its name
        created.append(partial)
        write_database(partial, pool, history)
        if not sample.log_dir.exists():
            created.append(sample.log_dir)
        log_records = write_logs(
            sample.log_dir, stream("logs"), pool, sample.first_day, sample.last_day
        )
        created.append(sample.config_path)
        write_config(
            sample.config_path,
            stream("config"),
            pool,
            SampleCipher(config_key, stream("config-iv"), issued_at),
        )
        created.append(sample.env_file)
        write_env(
            sample.env_file,
            {
                CACHE_KEY_ENV: cache_key,
                CONFIG_KEY_ENV: config_key,
                "PROXYWHIRL_DB": str(sample.database),
                "PROXYWHIRL_LOG_DIR": str(sample.log_dir),
                "PROXYWHIRL_CONFIG": str(sample.config_path),
                # The partitions start with the sample's data, so the UI's partition bars
                # show its days rather than a sliver of a long range.
                "EXPORT_PARTITION_START": sample.first_day.isoformat(),
            },
        )
        # The database appears last, under its final name: its presence means "complete".
        partial.rename(sample.database)
    except BaseException:
        # _refuse_existing made sure no proxywhirl.* log was there: any now are this run's.
        if sample.log_dir.is_dir():
            for path in sample.log_dir.glob(f"{LOG_STEM}.*"):
                path.unlink(missing_ok=True)
        _remove(created)
        raise
    return SampleDeployment(
        root=root,
        database=sample.database,
        log_dir=sample.log_dir,
        config_path=sample.config_path,
        env_file=sample.env_file,
        cache_encryption_key=cache_key,
        config_encryption_key=config_key,
        first_day=sample.first_day,
        last_day=sample.last_day,
        proxies=proxies,
        validations=history.count,
        log_records=log_records,
    )


def _check_arguments(
    proxies: int, days: int, end_date: date, validations_per_day: int, seed: int
) -> None:
    for name, value, minimum in (
        ("proxies", proxies, 1),
        ("days", days, 1),
        ("validations_per_day", validations_per_day, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {value}")
    if days > MAX_DAYS:
        raise ValueError(f"days must be at most {MAX_DAYS} (ten years), got {days}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be a whole number, got {seed!r}")
    if isinstance(end_date, datetime) or not isinstance(end_date, date):
        raise ValueError(f"end_date must be a date (YYYY-MM-DD), got {end_date!r}")
    if end_date > _LATEST_END_DATE or end_date - _EARLIEST_FIRST_DAY < timedelta(days=days - 1):
        raise ValueError(
            f"end_date {end_date} with days={days} is out of range: the history must lie "
            f"between {_EARLIEST_FIRST_DAY} and {_LATEST_END_DATE}"
        )


def _refuse_existing(sample: SampleDeployment) -> None:
    if sample.root.exists() and not sample.root.is_dir():
        raise ValueError(f"{sample.root} is a file, not a folder: choose a folder for --out")
    logs = sorted(sample.log_dir.glob(f"{LOG_STEM}.*")) if sample.log_dir.is_dir() else []
    for path in (sample.database, sample.config_path, sample.env_file, *logs):
        if path.exists() or path.is_symlink():
            raise ValueError(
                f"{path} already exists: a sample deployment never overwrites a ProxyWhirl "
                "deployment. Choose an empty folder for --out, or delete the old sample first."
            )


def _remove(paths: list[Path]) -> None:
    """Undo a failed run: its files first, then the folders it created."""
    for path in reversed(paths):
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        else:
            path.unlink(missing_ok=True)
