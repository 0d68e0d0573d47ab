"""Days in batches (core.batches): grouping, cutting back, failures naming their day, and the
batched features and scoring giving byte-for-byte the tables of the day-by-day path."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ml_assets.core.batches import batches, cut, in_batches
from ml_assets.core.features import (
    FeatureError,
    build_features,
    build_features_days,
    is_rowwise,
    rowwise,
)
from ml_assets.core.tables import content_hash
from ml_assets_tests.core._helpers import config


def day(n: int, value: float = 1.0, dtype: str = "float64") -> pd.DataFrame:
    return pd.DataFrame({"x": pd.array([value] * n, dtype=dtype)}, index=range(100, 100 + n))


def test_batches_bound_rows_keep_order_and_put_a_big_day_alone():
    days = [("d1", day(3)), ("d2", day(3)), ("d3", day(10)), ("d4", day(2)), ("d5", day(0))]
    groups = [[d for d, _ in g] for g in batches(days, max_rows=6)]
    assert groups == [["d1", "d2"], ["d3"], ["d4", "d5"]]


def test_batches_never_stack_days_of_different_dtypes():
    days = [("d1", day(2)), ("d2", day(2, 1, "Float64")), ("d3", day(2, 1, "Float64"))]
    assert [[d for d, _ in g] for g in batches(days)] == [["d1"], ["d2", "d3"]]


def test_cut_gives_each_day_its_rows_and_refuses_a_changed_row_count():
    group = [("d1", day(2, 1.0)), ("d2", day(3, 2.0))]
    stacked = pd.concat([f for _, f in group], ignore_index=True)
    parts = dict(cut(stacked * 10, group))
    assert parts["d1"]["x"].tolist() == [10.0, 10.0]
    assert parts["d2"]["x"].tolist() == [20.0, 20.0, 20.0]
    assert list(parts["d2"].index) == [0, 1, 2]
    with pytest.raises(ValueError, match="2 day.*5 rows came back with 4 rows"):
        cut(stacked.iloc[:4], group)


def test_a_failing_batch_is_retried_day_by_day_to_name_the_day():
    def fn(frame):
        if (frame["x"] < 0).any():
            raise ValueError("negative x")
        return frame * 2

    days = [("d1", day(2, 1.0)), ("d2", day(2, -1.0)), ("d3", day(2, 3.0))]
    seen = []
    with pytest.raises(RuntimeError, match="d2: ValueError: negative x") as info:
        for name, out in in_batches(iter(days), fn,
                                    on_error=lambda d, e: RuntimeError(f"{d}: {type(e).__name__}: {e}")):
            seen.append((name, out["x"].tolist()))
    assert seen == [("d1", [2.0, 2.0])]  # the day before the failing one was still produced
    assert isinstance(info.value.__cause__, ValueError)


def test_a_function_that_is_not_row_wise_falls_back_to_day_by_day():
    # fails only when given more than one day's rows: the days alone are the reference
    def fn(frame):
        if len(frame) > 2:
            raise ValueError("needs one day")
        return frame + 1

    out = dict(in_batches([("d1", day(2)), ("d2", day(2))], fn))
    assert out["d1"]["x"].tolist() == [2.0, 2.0] and out["d2"]["x"].tolist() == [2.0, 2.0]


def day_mean(frame: pd.DataFrame) -> pd.DataFrame:
    """Not row-wise: each row gets its day's mean."""
    return frame.assign(x1_mean=frame["x1"].astype("float64").mean())


@rowwise
def double_x1(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(x1_double=frame["x1"].astype("float64") * 2)


def processed_days(n_days: int = 4, rows: int = 5) -> list[tuple[str, pd.DataFrame]]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(n_days):
        out.append((f"2024-01-{i + 1:02d}", pd.DataFrame({
            "id": pd.array(np.arange(i * rows, (i + 1) * rows), dtype="Int64"),
            "x1": rng.normal(loc=i, size=rows), "x2": rng.normal(size=rows),
            "c": pd.array(rng.choice(["a", "b"], size=rows), dtype="string"),
            "y": pd.array(rng.integers(0, 2, size=rows), dtype="Int64"),
        })))
    return out


def test_a_transform_without_the_row_wise_mark_gets_one_day_at_a_time():
    cfg = config(features={"numeric": ["x1", "x2", "x1_mean"], "categorical": ["c"],
                           "transforms": [f"{__name__}:day_mean"]})
    assert not is_rowwise(cfg)
    days = processed_days()
    got = dict(build_features_days(iter(days), cfg))
    for name, frame in days:
        assert got[name]["x1_mean"].nunique() == 1
        assert got[name]["x1_mean"].iloc[0] == pytest.approx(frame["x1"].mean())


#: Not row-wise, but marked as if it were (the mistake the sampled check catches).
wrongly_marked_day_mean = rowwise(lambda frame: day_mean(frame))


def test_a_per_day_transform_marked_row_wise_fails_naming_the_day_and_the_column():
    cfg = config(features={"numeric": ["x1", "x2", "x1_mean"], "categorical": ["c"],
                           "transforms": [f"{__name__}:wrongly_marked_day_mean"]})
    assert is_rowwise(cfg)
    with pytest.raises(RuntimeError) as info:
        list(build_features_days(iter(processed_days()), cfg,
                                 on_error=lambda d, e: RuntimeError(f"partition {d}: {e}")))
    message = str(info.value)
    assert message.startswith("partition 2024-01-01: transforms marked @rowwise "
                              f"({__name__}:wrongly_marked_day_mean) gave day 2024-01-01")
    assert "3 more day(s)" in message and "['x1_mean']" in message and "\n" not in message
    # without on_error the FeatureError itself is raised
    with pytest.raises(FeatureError, match="must not be marked @rowwise"):
        list(build_features_days(iter(processed_days()), cfg))
    # an empty first day is not the sample: the next day is, and is named
    days = [("2023-12-31", processed_days(1)[0][1].iloc[:0]), *processed_days()]
    with pytest.raises(FeatureError, match="gave day 2024-01-01 other features when built "
                                           "together with 4 more day"):
        list(build_features_days(iter(days), cfg))
    # one day alone is a batch of one: nothing to compare, the day's own mean is right
    [(_, alone)] = build_features_days(iter(processed_days(1)), cfg)
    assert alone["x1_mean"].iloc[0] == pytest.approx(processed_days(1)[0][1]["x1"].mean())


def test_row_wise_transforms_give_the_day_by_day_tables():
    cfg = config(features={"numeric": ["x1", "x2", "x1_double"], "categorical": ["c"],
                           "transforms": [f"{__name__}:double_x1"]})
    assert is_rowwise(cfg)
    days = processed_days()
    got = list(build_features_days(iter(days), cfg))
    assert [d for d, _ in got] == [d for d, _ in days]
    for (name, frame), (_, batched) in zip(days, got, strict=True):
        assert content_hash(batched) == content_hash(build_features(frame, cfg)), name


def test_flights_features_and_scores_in_batches_equal_day_by_day_byte_for_byte():
    """Real flights days: the features step's and the predictions step's batched outputs encode
    to the same Parquet bytes (the same content hash) as the day-by-day ones."""
    from ml_assets.core.batches import in_batches
    from ml_assets.core.contract import clean
    from ml_assets.core.features import key_columns
    from ml_assets.core.scoring import LoadedModel, score
    from ml_assets.core.sources import read_source
    from ml_assets.core.training import train
    from ml_assets_tests.helpers import flights_config

    cfg = flights_config()
    assert is_rowwise(cfg)
    batch = read_source(cfg, dt.date(2013, 1, 1), dt.date(2013, 1, 11))
    processed = [(d, clean(raw, cfg, d).processed) for d, raw in sorted(batch.frames.items())]
    per_day = {d: build_features(p, cfg) for d, p in processed}
    batched = dict(build_features_days(iter(processed), cfg))
    assert list(batched) == list(per_day)
    for d in per_day:
        assert len(per_day[d]) > 0
        assert content_hash(batched[d]) == content_hash(per_day[d]), d

    import lightgbm as lgb

    trained = train(per_day, cfg.model_copy(update={"training": cfg.training.model_copy(
        update={"window_days": 10, "validation_days": 2,
                "params": {"num_boost_round": 15, "seed": 1}})}))
    model = LoadedModel(model_id="m", task=trained.task, numeric=trained.numeric,
                        categorical=trained.categorical, version="v1",
                        booster=lgb.Booster(model_str=trained.model_text))
    keys = key_columns(cfg)
    scored = dict(in_batches(iter(per_day.items()), lambda f: score(model, f, keys),
                             max_rows=2500))  # several batches of several days
    for d, frame in per_day.items():
        assert content_hash(scored[d]) == content_hash(score(model, frame, keys)), d


@pytest.mark.parametrize("with_history", [True, False], ids=["history", "no_history"])
def test_clean_in_batches_equals_clean_day_by_day_on_hostile_flights_days(tmp_path, with_history):
    """Flights days with a key repeated from an earlier day of the same batch, a key repeated
    within a day, unparseable and out-of-range values and an empty day: the batched clean gives
    the processed rows, the quarantine (reasons naming the first holder) and the key hashes of
    clean() called day after day."""
    from ml_assets.core import keys
    from ml_assets.core.contract import clean, clean_days
    from ml_assets.core.sources import read_source
    from ml_assets.core.storage import LocalStore
    from ml_assets_tests.helpers import flights_config

    cfg = flights_config()
    assert cfg.primary_key
    frames = read_source(cfg, dt.date(2013, 1, 1), dt.date(2013, 1, 6)).frames
    raw = {d: f.copy() for d, f in sorted(frames.items())}
    d1, d2, d3, d4, d5 = sorted(raw)
    raw[d3] = pd.concat([raw[d3], raw[d2].iloc[[5]], raw[d3].iloc[[0]]], ignore_index=True)
    numeric = next(c for c, s in cfg.schema_.items() if s.dtype == "float64" and c in raw[d4])
    raw[d4][numeric] = raw[d4][numeric].astype(object)
    raw[d4].loc[raw[d4].index[:3], numeric] = ["oops", "inf", "-1e400"]
    raw[d5] = raw[d5].iloc[0:0]

    def history():
        if not with_history:
            return None
        return keys.KeyHistory.load(LocalStore(str(tmp_path)), "p", cfg, exclude=list(raw))

    expected, h = {}, history()
    for d, frame in raw.items():
        expected[d] = clean(frame, cfg, d, h)
        if h is not None:
            h.add(d, expected[d].processed, expected[d].key_hashes)
    got = list(clean_days(iter(raw.items()), cfg, history()))
    assert [d for d, _ in got] == list(raw)
    assert len(expected[d3].quarantine) >= 2 and len(expected[d4].quarantine) >= 3
    for d, cleaned in got:
        assert content_hash(cleaned.processed) == content_hash(expected[d].processed), d
        assert content_hash(cleaned.quarantine) == content_hash(expected[d].quarantine), d
        if with_history:
            assert (cleaned.key_hashes == expected[d].key_hashes).all(), d
    if with_history:
        reasons = " ".join(dict(got)[d3].quarantine["reason"].tolist())
        assert f"partition {d2}" in reasons  # the first holder, from the same batch
