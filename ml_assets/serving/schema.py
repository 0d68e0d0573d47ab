"""The request contract of a loaded model: a pydantic model built from its feature schema, and
the two ways a validated request becomes predictions.

- Numeric features are required JSON numbers or null (null is a missing value, as in training);
  a string, a boolean or a non-finite number is refused.
- Categorical features are required JSON strings or null. A level the model never saw in
  training is handled as in training and batch scoring: it becomes a missing value (the
  categorical's levels are the training window's, anything else is NaN). The response counts
  such levels per feature, and so does the `unknown_levels_total` metric.
- Key columns (the config's `primary_key`, when not features) are optional and typed by the
  config's schema; they are echoed back and logged, so a served prediction can be joined with
  its label later. Other fields are ignored.

Scoring is `ml_assets.core.scoring.score`, the function the batch `predictions` asset uses, or
the fast path: the model's input matrix built with numpy from the validated columns instead of
pandas (one record, or a batch). It feeds LightGBM the same float64 values that `encode` would
(numeric as float64, a categorical as its level's code, missing as NaN), so its predictions are
identical. `ServedModel.self_check` verifies that against `score` on synthetic rows when a model
is loaded (a model that fails it is served through `score` only), and the serving parity test
on real flights rows through HTTP, one record and whole days.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, NotRequired, Required

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from typing_extensions import TypedDict

from ml_assets.core.scoring import LoadedModel, score

_NUMBER = Annotated[float | None, Field(strict=True, allow_inf_nan=False)]
_LEVEL = Annotated[str | None, Field(strict=True, max_length=1000)]
_KEY_TYPES: dict[str, Any] = {
    "int64": Annotated[int | None, Field(strict=True)],
    "float64": Annotated[float | None, Field(strict=True, allow_inf_nan=False)],
    "bool": Annotated[bool | None, Field(strict=True)],
    "string": Annotated[str | None, Field(strict=True, max_length=1000)],
    "datetime": Annotated[str | None, Field(strict=True, max_length=64)],
}


class RequestError(ValueError):
    """A request the API refuses: `status` (413, 422) and FastAPI-style `detail` entries."""

    def __init__(self, status: int, message: str, detail: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail or []


@dataclass
class Batch:
    """A validated request, by column: feature and key columns by name, one value per record."""

    columns: dict[str, list[Any]]
    rows: int
    single: bool  # the body was one JSON object, not a list

    def record(self, i: int) -> dict[str, Any]:
        return {name: values[i] for name, values in self.columns.items()}


class RecordSchema:
    """The pydantic model of one record for `model`, and the request parser built on it."""

    def __init__(self, model: LoadedModel, keys: dict[str, str], title: str = "Record"):
        self.numeric = list(model.numeric)
        self.categorical = {c: list(v) for c, v in model.categorical.items()}
        self.features = [*self.numeric, *self.categorical]
        self.keys = {k: dtype for k, dtype in keys.items() if k not in self.features}
        self.columns = [*self.features, *self.keys]
        # internal field names f0, f1, ... with the column name as alias: a feature may be named
        # like a BaseModel attribute (`copy`, `json`, `schema`) or not be an identifier at all
        fields: dict[str, Any] = {}
        for i, col in enumerate(self.features):
            kind = _NUMBER if col in self.numeric else _LEVEL
            fields[f"f{i}"] = (kind, Field(..., alias=col))
        for j, (col, dtype) in enumerate(self.keys.items()):
            fields[f"k{j}"] = (_KEY_TYPES[dtype], Field(default=None, alias=col))
        self.model: type[BaseModel] = create_model(
            title, __config__=ConfigDict(extra="ignore", populate_by_name=False), **fields)
        # The validator: the same field types as a TypedDict keyed by column name, so pydantic
        # hands back plain dicts (no model instance per record: 1000 records 3.4 -> 1.7 ms).
        # The model above is what GET /model publishes; both come from `fields`.
        record = TypedDict(title, {
            col: (Required[kind] if info.is_required() else NotRequired[kind])
            for (kind, info), col in ((fields[f], fields[f][1].alias) for f in fields)})
        self._one = TypeAdapter(record)
        self._many = TypeAdapter(list[record])
        self.codes = {c: {level: float(i) for i, level in enumerate(levels)}
                      for c, levels in self.categorical.items()}

    def json_schema(self) -> dict:
        return self.model.model_json_schema(by_alias=True)

    def parse(self, body: bytes, max_rows: int) -> Batch:
        """Validate a JSON body: one record (an object) or a list of records."""
        start = body.lstrip()[:1]
        if start == b"[":
            adapter, single = self._many, False
        elif start == b"{":
            adapter, single = self._one, True
        else:
            raise RequestError(422, f"{_not_json(body)}: the body must be a JSON object (one "
                               "record) or a JSON array of records, UTF-8",
                               [{"loc": ["body"], "type": "json_invalid",
                                 "msg": "expected a JSON object or array"}])
        try:
            parsed = adapter.validate_json(body)
        except ValidationError as exc:
            raise validation_error(exc, single) from None
        items = [parsed] if single else parsed
        if not items:
            raise RequestError(422, "the list of records is empty",
                               [{"loc": ["body"], "type": "too_short", "msg": "no records"}])
        if len(items) > max_rows:
            raise RequestError(413, f"{len(items)} records in one request; the limit is "
                               f"{max_rows} (serving.max_batch_rows)")
        columns = {name: [item[name] for item in items] for name in self.features}
        columns.update({name: [item.get(name) for item in items] for name in self.keys})
        return Batch(columns, len(items), single)

    # ------------------------------------------------------------ the two scoring paths
    def row(self, record: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
        """One record as the model's input row (what `encode` + LightGBM's pandas conversion
        produce), and the categoricals whose level is unknown."""
        values = [math.nan if (v := record[c]) is None else float(v) for c in self.numeric]
        unknown = []
        for col, codes in self.codes.items():
            level = record[col]
            code = codes.get(level) if level is not None else None
            if code is None:
                if level is not None:
                    unknown.append(col)
                code = math.nan
            values.append(code)
        return np.array([values], dtype="float64"), unknown

    def matrix(self, columns: dict[str, list[Any]], rows: int) -> np.ndarray:
        """Validated columns as the model's input matrix: the values `row` gives, for a batch."""
        out = np.empty((rows, len(self.features)), dtype="float64")
        for j, col in enumerate(self.numeric):
            out[:, j] = np.array(columns[col], dtype="float64")  # None -> NaN
        nan = math.nan
        for j, (col, codes) in enumerate(self.codes.items(), start=len(self.numeric)):
            get = codes.get
            out[:, j] = np.fromiter((nan if v is None else get(v, nan) for v in columns[col]),
                                    dtype="float64", count=rows)
        return out

    def frame(self, columns: dict[str, list[Any]]) -> pd.DataFrame:
        """Columns of validated values as feature rows, typed like the features table (numeric
        float64 with NaN for null, categorical string)."""
        data = {col: np.array(columns[col], dtype="float64") for col in self.numeric}
        data.update({col: pd.array(columns[col], dtype="string") for col in self.categorical})
        return pd.DataFrame(data)

    def unknown_levels(self, columns: dict[str, list[Any]]) -> dict[str, int]:
        """Per categorical feature, how many values are levels the model never saw."""
        out = {}
        for col, codes in self.codes.items():
            count = sum(1 for v in columns[col] if v is not None and v not in codes)
            if count:
                out[col] = count
        return out


class ThreadCapped:
    """A LightGBM booster whose `predict` uses `threads` OpenMP threads (the values do not
    depend on it: each row is scored on its own)."""

    def __init__(self, booster: Any, threads: int):
        self._booster = booster
        self._threads = threads

    def predict(self, data, **kwargs):
        return self._booster.predict(data, **{"num_threads": self._threads, **kwargs})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._booster, name)


@dataclass
class ServedModel:
    """A loaded model ready to serve: its registry record, booster and request schema.

    One record is predicted on one thread: an OpenMP team for one row costs more than the row
    (and, with the load on the other core, its barrier can wait milliseconds for a thread the
    OS has not scheduled). Batches use `batch_threads` (0: LightGBM's default, every core).
    """

    model_id: str
    version: str
    loaded: LoadedModel
    schema: RecordSchema
    sidecar: dict[str, Any] = field(repr=False)
    fast_path: bool = True
    batch_threads: int = 0

    def __post_init__(self) -> None:
        self._batch_model = self.loaded if self.batch_threads <= 0 else replace(
            self.loaded, booster=ThreadCapped(self.loaded.booster, self.batch_threads))

    @property
    def binary(self) -> bool:
        return self.loaded.task == "binary"

    def predict_one(self, record: dict[str, Any]) -> tuple[float, list[str]]:
        row, unknown = self.schema.row(record)
        return float(self.loaded.booster.predict(row, num_threads=1)[0]), unknown

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """The batch path through `core.scoring.score`: what the `predictions` asset computes."""
        return score(self._batch_model, frame, [])["prediction"].to_numpy()

    def predict_columns(self, columns: dict[str, list[Any]], rows: int) -> np.ndarray:
        """The fast batch path (checked equal to `predict_frame` by `self_check`)."""
        return np.asarray(self._batch_model.booster.predict(self.schema.matrix(columns, rows)),
                          dtype="float64")

    def synthetic_records(self) -> list[dict[str, Any]]:
        """Rows that exercise every branch of the input encoding: the training quantiles of
        each numeric feature, each categorical level, missing values and an unknown level."""
        reference = self.sidecar.get("reference", {}).get("numeric", {})
        rows = []
        for i in range(7):
            record: dict[str, Any] = {}
            for col in self.schema.numeric:
                quantiles = list((reference.get(col) or {}).get("quantiles", {}).values())
                values = [q for q in quantiles if q is not None] or [0.0, 1.0]
                record[col] = None if i == 6 else float(values[i % len(values)])
            for col, levels in self.schema.categorical.items():
                choices = [*levels, None, "\x00unknown level"]
                record[col] = choices[i % len(choices)] if levels else None
            rows.append(record)
        return rows

    def self_check(self) -> str | None:
        """Warm the model up on both paths and compare them; why they differ, or None."""
        records = self.synthetic_records()
        batch = self.predict_frame(self.schema.frame(
            {c: [r[c] for r in records] for c in self.schema.features}))
        one = np.array([self.predict_one(r)[0] for r in records])
        columns = {c: [r[c] for r in records] for c in self.schema.features}
        fast = self.predict_columns(columns, len(records))
        for name, values in (("one-record", one), ("fast batch", fast)):
            if not np.array_equal(batch, values, equal_nan=True):
                worst = int(np.nanargmax(np.abs(batch - values)))
                return (f"the {name} path gave {values[worst]!r} where score() gave "
                        f"{batch[worst]!r} on synthetic row {worst}")
        return None


def validation_error(exc: ValidationError, single: bool) -> RequestError:
    detail = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = list(err["loc"])
        detail.append({"loc": ["body", *loc], "msg": err["msg"], "type": err["type"]})
    first = detail[0]
    loc = first["loc"][1:]
    if err_is_json(first):
        message = f"the body is not valid JSON: {first['msg']}"
    else:
        record = "the record" if single else (f"record {loc[0]}" if loc and isinstance(loc[0], int)
                                             else "the body")
        fields = [str(p) for p in loc if not isinstance(p, int)]
        where = f"{record}, field {fields[-1]!r}" if fields else record
        message = f"{where}: {first['msg'].lower()}"
        if len(detail) > 1:
            message += f" (and {len(detail) - 1} more problem(s))"
    return RequestError(422, message, detail[:50])


def err_is_json(entry: dict) -> bool:
    return entry["type"] in ("json_invalid", "json_type")


def _not_json(body: bytes) -> str:
    """What a body that does not start a JSON object or array is, in words."""
    if not body.strip():
        return "the body is empty"
    if body.startswith(b"\xef\xbb\xbf"):
        return "the body is not valid JSON (it starts with a UTF-8 byte-order mark)"
    if body.startswith(b"\x1f\x8b"):
        return "the body is not valid JSON (it is gzip-compressed)"
    if body.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in body[:64]:
        return "the body is not valid JSON (it looks like UTF-16 or UTF-32)"
    try:
        text = body[:40].decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not valid JSON (it is not UTF-8)"
    try:  # valid JSON, but a scalar (null, a number, a string, true/false)
        value = json.loads(body)
    except ValueError:
        return f"the body is not valid JSON (it starts {text!r})"
    kind = {type(None): "JSON null", bool: "a JSON boolean", str: "a JSON string",
            int: "a JSON number", float: "a JSON number"}.get(type(value), "a JSON scalar")
    return f"the body is {kind}"
