"""Run config of the exports, as the launchpad shows it: every option, checked before a step runs.

A config error fails the run at once, naming each bad option, its value and what to do
(``RunConfigError``); the options it selects are plain ``ExportOptions`` /
``DocumentOptions`` (``export_assets.lib.exports.export``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from dagster import Config, Failure
from pydantic import Field, ValidationError, field_validator, model_validator

from export_assets.lib.exports.export import (
    Compression,
    CompressionSetting,
    DocumentFormat,
    DocumentOptions,
    ExportOptions,
    Format,
    ParquetCompression,
    check_compression,
    check_fields,
    default_compression,
)


class RunConfigError(ValidationError, Failure):
    """A run config its ``Config`` class rejected: a pydantic ``ValidationError`` for code
    that builds configs, and a ``Failure`` that Dagster never retries for a run.

    Dagster builds an asset's ``Config`` in the step, before the asset's code and outside
    its error handling: a plain ``ValidationError`` there would be retried with backoff by
    the asset's ``RetryPolicy``, though the same config fails every time. ``str()`` and the
    ``description`` the UI shows are one line: each option, its value and what to do.
    """

    description: str
    metadata: dict[str, Any]
    allow_retries: bool

    def __str__(self) -> str:
        return self.description


def run_config_error(config_class: type[Config], error: ValidationError) -> RunConfigError:
    """``error`` as a ``RunConfigError`` whose one-line message names each bad option."""
    found = RunConfigError.from_exception_data(error.title, error.errors())  # type: ignore[arg-type]
    problems = [_problem(config_class, detail) for detail in error.errors()]
    # Failure.__init__ does not run (pydantic builds the instance): set what Dagster reads.
    found.description = f"invalid run config ({config_class.__name__}): " + "; ".join(problems)
    found.metadata = {}
    found.allow_retries = False
    return found


def _problem(config_class: type[Config], detail: Any) -> str:
    """One error of a ValidationError as ``option=value: what is wrong, what to do``."""
    location = ".".join(str(part) for part in detail["loc"])
    message = str(detail["msg"]).removeprefix("Value error, ")
    kind = detail["type"]
    if not location:  # a model validator: the message names the options itself
        return message
    shown = f"{location}={_shown(detail['input'])}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        return f"{shown} is out of range: use {_range(config_class, str(detail['loc'][0]))}"
    if kind == "extra_forbidden":
        valid = ", ".join(config_class.model_fields)
        return f"{location} is not an option: valid options are {valid}"
    if kind == "string_pattern_mismatch":  # the field's description says what it takes
        field = config_class.model_fields.get(str(detail["loc"][0]))
        return f"{shown} is refused: {field.description if field else message}"
    return f"{shown}: {message}"


def _shown(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _range(config_class: type[Config], name: str) -> str:
    """A field's numeric bounds in words: ``a value from 1 to 9``, ``0 or more``."""
    field = config_class.model_fields.get(name)
    bounds = {
        kind: getattr(constraint, kind)
        for constraint in ([] if field is None else field.metadata)
        for kind in ("ge", "gt", "le", "lt")
        if hasattr(constraint, kind)
    }
    if "ge" in bounds and "le" in bounds:
        return f"a value from {bounds['ge']} to {bounds['le']}"
    words = {"ge": "{} or more", "gt": "more than {}", "le": "{} or less", "lt": "less than {}"}
    return " and ".join(words[kind].format(value) for kind, value in bounds.items()) or (
        "a value in range"
    )


class FailFastConfig(Config):
    """A run config whose validation errors fail the run at once (``RunConfigError``)."""

    def __init__(self, **config: Any) -> None:
        try:
            super().__init__(**config)
        except RunConfigError:
            raise
        except ValidationError as exc:
            raise run_config_error(type(self), exc) from None


class ExportConfig(FailFastConfig):
    """Options every export asset takes in its run config (shown in the launchpad).

    Subclasses set per-asset defaults by overriding a field's default, and may name their
    columns in ``field_names`` so that an unknown name in ``fields`` is refused with the
    run config, before anything is read.
    """

    field_names: ClassVar[tuple[str, ...] | None] = None

    format: Format = Field(
        default="csv",
        description=(
            "File format, one of: csv, jsonl (one JSON object per line), json (one array), "
            "txt (proxy URLs, one per line; proxy lists only), parquet, xlsx."
        ),
    )
    compression: CompressionSetting = Field(
        default="auto",
        description=(
            "Outer codec, one of: auto, none, gzip, zstd, zip (an archive holding the one "
            "data file). auto: the format's default, gzip for csv/jsonl/json/txt and none "
            "for parquet and xlsx, which compress internally and take no outer codec."
        ),
    )
    gzip_level: int = Field(
        default=6,
        ge=1,
        le=9,
        description="Deflate level of gzip and zip, a whole number from 1 (fast) to 9 (small).",
    )
    zstd_level: int = Field(
        default=3,
        ge=1,
        le=22,
        description="zstd level, a whole number from 1 (fast) to 22 (small, slow).",
    )
    parquet_compression: ParquetCompression = Field(
        default="zstd",
        description="Compression inside parquet files, one of: zstd, snappy, gzip, none.",
    )
    neutralize_formulas: bool = Field(
        default=True,
        description=(
            "csv and xlsx: text cells starting with = + - @ tab or carriage return get a "
            "leading ' so spreadsheets show them instead of running them as formulas "
            "(OWASP CSV injection). Numbers are never changed."
        ),
    )
    fields: list[str] | None = Field(
        default=None,
        description=(
            "Columns to export, in this order (names as in the asset's column schema). "
            "Unset: every column. An unknown name fails the run at once, listing the valid ones."
        ),
    )

    @field_validator("compression", mode="before")
    @classmethod
    def _none_is_auto(cls, compression: object) -> object:
        return "auto" if compression is None else compression  # Python callers' old spelling

    @field_validator("fields")
    @classmethod
    def _fields_are_a_selection(cls, fields: list[str] | None) -> list[str] | None:
        check_fields(fields)
        known = cls.field_names
        if fields is not None and known is not None:
            unknown = [name for name in fields if name not in known]
            if unknown:
                raise ValueError(
                    f"no field {', '.join(map(repr, unknown))}; valid fields: {', '.join(known)}"
                )
        return fields

    @model_validator(mode="after")
    def _codec_fits_format(self) -> ExportConfig:
        if self.compression != "auto":
            check_compression(self.format, self.compression)
        return self

    def options(self) -> ExportOptions:
        """The write options this config selects, with the format's default codec resolved."""
        return ExportOptions(
            format=self.format,
            compression=(
                default_compression(self.format) if self.compression == "auto" else self.compression
            ),
            gzip_level=self.gzip_level,
            zstd_level=self.zstd_level,
            parquet_compression=self.parquet_compression,
            neutralize_formulas=self.neutralize_formulas,
            fields=None if self.fields is None else tuple(self.fields),
        )


class DocumentConfig(FailFastConfig):
    """Options of a document export, such as ``pool_config`` (shown in the launchpad)."""

    format: DocumentFormat = Field(
        default="yaml", description="One of: yaml, json. Keys are written in sorted order."
    )
    compression: Compression = Field(
        default="none",
        description="Outer codec, one of: none (default: a config is small and read by "
        "people), gzip, zstd, zip.",
    )
    gzip_level: int = Field(
        default=6, ge=1, le=9, description="Deflate level of gzip and zip, a whole number "
        "from 1 (fast) to 9 (small).",
    )
    zstd_level: int = Field(
        default=3, ge=1, le=22, description="zstd level, a whole number from 1 (fast) to 22 "
        "(small, slow).",
    )

    def options(self) -> DocumentOptions:
        """The write options this config selects."""
        return DocumentOptions(
            format=self.format,
            compression=self.compression,
            gzip_level=self.gzip_level,
            zstd_level=self.zstd_level,
        )
