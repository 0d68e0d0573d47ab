"""The fast drift engine against Evidently 0.7.23 itself: same scores (to float rounding), same
verdicts, on clear drift, no drift and borderline data for every supported method, with reference
sizes below and above Evidently's 1,000-row switch (and above 10,000 for KS, where SciPy changes
p-value mode), with NaN/inf values and unseen categories. Evidently is imported once per module."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ml_assets.core import drift
from ml_assets.core.drift import (
    CATEGORICAL_METHODS,
    DEFAULT_THRESHOLDS,
    NUMERIC_METHODS,
    DriftSettings,
    column_drift,
    dataset_drift,
    evidently_drift,
    evidently_report_html,
    is_drifted,
    method_direction,
    seeded_sample,
)

REL_TOL = 1e-9
BISECTION_STEPS = 30


@pytest.fixture(scope="module", autouse=True)
def _evidently_imported():
    """Pay Evidently's import (about 3-5 s) once, up front. Evidently is a locked dependency: a
    missing Evidently fails here rather than skipping the ground truth."""
    import evidently  # noqa: F401


def _settings(kind: str, method: str, threshold: float | None = None) -> DriftSettings:
    if kind == drift.NUMERIC:
        return DriftSettings(numeric_method=method, numeric_threshold=threshold)
    return DriftSettings(categorical_method=method, categorical_threshold=threshold)


def _assert_same(ours: drift.DriftResult, truth: drift.DriftResult) -> None:
    assert [c.column for c in ours.columns] == [c.column for c in truth.columns]
    for mine, theirs in zip(ours.columns, truth.columns, strict=True):
        where = f"column {mine.column!r} ({mine.method}): ours {mine.score!r}, Evidently {theirs.score!r}"
        assert (mine.method, mine.threshold, mine.evaluated) == (theirs.method, theirs.threshold, theirs.evaluated), where
        assert mine.drifted == theirs.drifted, where
        assert (mine.reference_rows, mine.current_rows) == (theirs.reference_rows, theirs.current_rows), where
        if math.isnan(theirs.score):
            assert math.isnan(mine.score), where
        else:
            assert mine.score == pytest.approx(theirs.score, rel=REL_TOL, abs=1e-300), where
    assert ours.share == truth.share


# --- data builders ---------------------------------------------------------------------------


def _spoil(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """3% NaN and two infinities at random places."""
    values = values.copy()
    values[rng.random(values.size) < 0.03] = np.nan
    values[rng.choice(values.size, 2, replace=False)] = [np.inf, -np.inf]
    return values


def _numeric_current(base: np.ndarray, shift: float) -> np.ndarray:
    return base + shift * 2.0  # the reference std is about 2


def _level_values(counts: dict[str, int], n_missing: int, rng: np.random.Generator) -> pd.Series:
    values = np.array([level for level, k in counts.items() for _ in range(k)] + [None] * n_missing, dtype=object)
    rng.shuffle(values)
    return pd.Series(pd.array(values, dtype="string"))


def _mixed_counts(n: int, t: float) -> dict[str, int]:
    """Level counts of n rows for the mix (1 - t) * p + t * q, rounded by largest remainder."""
    p = np.array([0.4, 0.3, 0.2, 0.1])
    q = np.array([0.1, 0.2, 0.3, 0.4])
    exact = n * ((1 - t) * p + t * q)
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts))[: n - counts.sum()]] += 1
    return dict(zip("abcd", counts.tolist(), strict=True))


def _bisect(make, verdict, lo: float = 0.0, hi: float = 1.0) -> tuple[float, float]:
    """The bracket [lo, hi] around the drift threshold: verdict(make(lo)) is False, verdict(make(hi))
    True, as close together as BISECTION_STEPS halvings get them."""
    assert not verdict(make(lo)) and verdict(make(hi))
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        if verdict(make(mid)):
            hi = mid
        else:
            lo = mid
    return lo, hi


def numeric_frames(method: str, n_ref: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Columns: clear (1 std shift), none (a subset of the reference), below/above (the two sides of
    the threshold, found by bisection on the shift), few (<= 20 distinct values, one value unseen in
    the reference), constant_ref (a constant reference: the Wasserstein std clamp). NaN and +/-inf
    in every column."""
    rng = np.random.default_rng(seed)
    n_cur = int(n_ref * 0.8)
    ref = rng.normal(10.0, 2.0, n_ref)
    base = rng.permutation(ref)[:n_cur] + rng.normal(0.0, 0.01, n_cur)
    ref_series = pd.Series(_spoil(ref, rng))

    def drifted(cur: np.ndarray) -> bool:
        return column_drift(ref_series, pd.Series(cur), "numeric", method).drifted

    spoiled_base = _spoil(base, rng)
    lo, hi = _bisect(lambda s: _numeric_current(spoiled_base, s), drifted)
    few_ref = rng.choice([0.0, 1.0, 2.0, 3.0, 4.0], n_ref, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    few_cur = rng.choice([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], n_cur, p=[0.28, 0.25, 0.2, 0.15, 0.1, 0.02])
    const_cur = np.full(n_cur, 3.0)
    const_cur[: n_cur // 100] = 3.0002
    reference = pd.DataFrame(
        {
            "clear": ref_series,
            "none": ref_series,
            "below": ref_series,
            "above": ref_series,
            "few": _spoil(few_ref, rng),
            "constant_ref": _spoil(np.full(n_ref, 3.0), rng),
        }
    )
    current = pd.DataFrame(
        {
            "clear": _numeric_current(spoiled_base, 1.0),
            "none": spoiled_base,
            "below": _numeric_current(spoiled_base, lo),
            "above": _numeric_current(spoiled_base, hi),
            "few": _spoil(few_cur, rng),
            "constant_ref": _spoil(const_cur, rng),
        }
    )
    return reference, current


def categorical_frames(method: str, n_ref: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`string` columns with <NA>: clear (reversed shares plus an unseen level), none (same shares),
    below/above (the two sides of the threshold on the mix), unseen_small (same shares plus 0.5% of
    a level the reference never had)."""
    rng = np.random.default_rng(seed)
    n_cur = int(n_ref * 0.8)
    ref_counts = _mixed_counts(n_ref, 0.0)
    ref_series = _level_values(ref_counts, n_ref // 50, rng)

    def current(t: float, extra: dict[str, int] | None = None) -> pd.Series:
        counts = _mixed_counts(n_cur, t)
        return _level_values({**counts, **(extra or {})}, n_cur // 40, rng)

    def drifted(cur: pd.Series) -> bool:
        return column_drift(ref_series, cur, "categorical", method).drifted

    lo, hi = _bisect(current, drifted)
    reference = pd.DataFrame(
        {name: ref_series for name in ("clear", "none", "below", "above", "unseen_small")}
    )
    current_frame = pd.DataFrame(
        {
            "clear": current(1.0, {"zz": n_cur // 10}),
            "none": current(0.0),
            "below": current(lo),
            "above": current(hi),
            "unseen_small": current(0.0, {"new": n_cur // 200}),
        }
    )
    return reference, current_frame


# --- agreement with Evidently ----------------------------------------------------------------

CASES = [
    *[("numeric", m, n) for m in NUMERIC_METHODS for n in (500, 3_000)],
    ("numeric", "ks", 12_000),  # above 10,000 values SciPy's KS switches to its asymptotic p-value
    ("numeric", "wasserstein", 12_000),
    *[("categorical", m, n) for m in CATEGORICAL_METHODS for n in (500, 3_000)],
]


@pytest.mark.parametrize(("kind", "method", "n_ref"), CASES)
def test_same_scores_and_verdicts_as_evidently(kind: str, method: str, n_ref: int) -> None:
    builder = numeric_frames if kind == "numeric" else categorical_frames
    reference, current = builder(method, n_ref)
    columns = list(reference.columns)
    numeric, categorical = (columns, []) if kind == "numeric" else ([], columns)
    settings = _settings(kind, method)

    ours = dataset_drift(reference, current, numeric, categorical, settings)
    truth = evidently_drift(reference, current, numeric, categorical, settings, preset=False)

    _assert_same(ours, truth)
    verdicts = {c.column: c.drifted for c in truth.columns}
    assert verdicts["clear"] and not verdicts["none"]
    assert not verdicts["below"] and verdicts["above"], "the borderline pair must straddle the threshold"


@pytest.mark.parametrize(
    ("kind", "method"),
    [*[("numeric", m) for m in NUMERIC_METHODS], *[("categorical", m) for m in CATEGORICAL_METHODS]],
)
def test_verdict_at_the_threshold_itself(kind: str, method: str) -> None:
    """Thresholds a hair below, exactly at, and a hair above Evidently's own score: the comparison
    (>= for distances, <= for KS, < for chi-square) must match Evidently's to the last bit. The
    categorical column has two levels, so its score does not depend on summation order."""
    rng = np.random.default_rng(7)
    if kind == "numeric":
        reference = pd.DataFrame({"x": _spoil(rng.normal(0.0, 1.0, 2_000), rng)})
        current = pd.DataFrame({"x": _spoil(rng.normal(0.15, 1.0, 1_500), rng)})
    else:
        reference = pd.DataFrame({"x": _level_values({"yes": 1_200, "no": 800}, 30, rng)})
        current = pd.DataFrame({"x": _level_values({"yes": 840, "no": 660}, 20, rng)})
    numeric, categorical = (["x"], []) if kind == "numeric" else ([], ["x"])
    score = evidently_drift(reference, current, numeric, categorical, _settings(kind, method), preset=False).columns[0].score
    assert 0 < score < 1

    for threshold in (score * (1 - 1e-9), score, score * (1 + 1e-9)):
        settings = _settings(kind, method, threshold)
        truth = evidently_drift(reference, current, numeric, categorical, settings, preset=False)
        ours = dataset_drift(reference, current, numeric, categorical, settings)
        assert ours.columns[0].score == truth.columns[0].score  # bit for bit here
        assert ours.columns[0].drifted == truth.columns[0].drifted, f"threshold {threshold!r}"
        assert ours.columns[0].drifted == is_drifted(method, score, threshold)

    at_threshold = dataset_drift(reference, current, numeric, categorical, _settings(kind, method, score))
    assert at_threshold.columns[0].drifted is (method != "chisquare")


def test_mixed_frame_with_the_full_preset() -> None:
    """One frame with numeric (float64, nullable Float64, int64) and categorical (string, str,
    category) columns, run through Report([DataDriftPreset(...)], include_tests=True) as the
    benchmark does."""
    rng = np.random.default_rng(3)
    n_ref, n_cur = 1_500, 1_200
    reference = pd.DataFrame(
        {
            "price": _spoil(rng.lognormal(3.0, 0.5, n_ref), rng),
            "delay": _spoil(rng.normal(0.0, 10.0, n_ref), rng),
            "carrier": pd.Series(rng.choice(["AA", "DL", "UA", "B6"], n_ref), dtype="str"),
            "origin": pd.Series(pd.Categorical(rng.choice(["JFK", "LGA", "EWR"], n_ref), categories=["JFK", "LGA", "EWR", "XXX"])),
            "seats": pd.array(np.where(rng.random(n_ref) < 0.05, None, rng.normal(150, 30, n_ref)), dtype="Float64"),
            "legs": rng.poisson(2, n_ref),
        }
    )
    current = pd.DataFrame(
        {
            "price": _spoil(rng.lognormal(3.3, 0.5, n_cur), rng),
            "delay": _spoil(rng.normal(0.0, 10.0, n_cur), rng),
            "carrier": pd.Series(rng.choice(["AA", "DL", "UA", "B6", "WN"], n_cur, p=[0.3, 0.3, 0.2, 0.1, 0.1]), dtype="str"),
            "origin": pd.Series(pd.Categorical(rng.choice(["JFK", "LGA", "EWR"], n_cur), categories=["JFK", "LGA", "EWR", "XXX"])),
            "seats": pd.array(np.where(rng.random(n_cur) < 0.05, None, rng.normal(160, 30, n_cur)), dtype="Float64"),
            "legs": rng.poisson(2.1, n_cur),
        }
    )
    numeric, categorical = ["price", "delay", "seats", "legs"], ["carrier", "origin"]
    for settings in (DriftSettings(), DriftSettings("ks", "chisquare"), DriftSettings("psi", "psi")):
        ours = dataset_drift(reference, current, numeric, categorical, settings)
        truth = evidently_drift(reference, current, numeric, categorical, settings)
        _assert_same(ours, truth)
        assert ours.by_column()["price"].drifted and not ours.by_column()["delay"].drifted


# --- edge cases ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Evidently's own stats on the empty column
def test_all_null_column_is_not_evaluated_where_evidently_raises() -> None:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    reference = pd.DataFrame({"empty": [np.nan] * 50, "ok": np.arange(50.0), "cat": pd.array([pd.NA] * 50, dtype="string")})
    current = pd.DataFrame({"empty": np.arange(50.0), "ok": np.arange(50.0) + 30, "cat": pd.array(["a"] * 50, dtype="string")})
    definition = DataDefinition(numerical_columns=["empty", "ok"], categorical_columns=["cat"])
    with pytest.raises(ValueError, match="empty column 'empty'"):
        Report([ValueDrift(column="empty", method="wasserstein")], include_tests=True).run(
            Dataset.from_pandas(current, data_definition=definition), Dataset.from_pandas(reference, data_definition=definition)
        )

    result = dataset_drift(reference, current, ["empty", "ok"], ["cat"])
    empty, ok, cat = result.columns
    assert not empty.evaluated and not empty.drifted and math.isnan(empty.score)
    assert "reference" in empty.note and (empty.reference_rows, empty.current_rows) == (0, 50)
    assert not cat.evaluated and "reference" in cat.note
    assert ok.evaluated and ok.drifted
    assert result.share == 1.0 and result.drifted_columns == ["ok"]
    _assert_same(result, evidently_drift(reference, current, ["empty", "ok"], ["cat"]))


def test_constant_reference_uses_evidently_std_floor() -> None:
    reference = pd.Series(np.full(100, 5.0), name="c")
    current = pd.Series(np.r_[np.full(99, 5.0), 5.01], name="c")
    result = column_drift(reference, current, "numeric", "wasserstein")
    assert result.score == pytest.approx(0.01 / 100 / 0.001)  # W1 = 1e-4, normed by the 0.001 floor
    assert result.drifted is False


def test_chisquare_unseen_level_is_always_drift_and_single_level_is_nan() -> None:
    reference = pd.Series(pd.array(["a"] * 500 + ["b"] * 500, dtype="string"), name="c")
    current = pd.Series(pd.array(["a"] * 500 + ["b"] * 499 + ["new"], dtype="string"), name="c")
    unseen = column_drift(reference, current, "categorical", "chisquare")
    assert unseen.score == 0.0 and unseen.drifted and "not in the reference" in unseen.note

    single = column_drift(pd.Series(["a"] * 10, name="s"), pd.Series(["a"] * 7, name="s"), "categorical", "chisquare")
    assert math.isnan(single.score) and not single.drifted and single.evaluated and "single level" in single.note
    truth = evidently_drift(pd.DataFrame({"s": ["a"] * 10}), pd.DataFrame({"s": ["a"] * 7}), [], ["s"], DriftSettings(categorical_method="chisquare"))
    assert math.isnan(truth.columns[0].score) and not truth.columns[0].drifted


def test_histogram_bins_match_numpy() -> None:
    rng = np.random.default_rng(11)
    ref, cur = np.sort(rng.normal(0, 1, 3_001)), np.sort(rng.normal(0.2, 3, 2_000))
    edges = drift._sturges_edges(min(ref[0], cur[0]), max(ref[-1], cur[-1]), ref.size + cur.size)
    np.testing.assert_array_equal(edges, np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges"))
    np.testing.assert_array_equal(drift._histogram_counts(ref, edges), np.histogram(ref, edges)[0])
    np.testing.assert_array_equal(drift._histogram_counts(cur, edges), np.histogram(cur, edges)[0])


# --- bad input -----------------------------------------------------------------------------


def test_unknown_method_names_it_and_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"'kolmogorov'.*allowed: \['wasserstein', 'ks', 'psi', 'jensenshannon'\]"):
        DriftSettings(numeric_method="kolmogorov")
    with pytest.raises(ValueError, match="unknown drift method 'hellinger'"):
        method_direction("hellinger")


@pytest.mark.parametrize(
    ("field", "method", "hint"),
    [("numeric_method", "chisquare", "categorical columns only"), ("categorical_method", "ks", "numeric columns only"), ("categorical_method", "wasserstein", "numeric columns only")],
)
def test_method_of_the_wrong_kind_is_rejected(field: str, method: str, hint: str) -> None:
    with pytest.raises(ValueError, match=hint):
        DriftSettings(**{field: method})
    kind = "numeric" if field == "numeric_method" else "categorical"
    with pytest.raises(ValueError, match=f"not supported for {kind} columns"):
        column_drift(pd.Series([1.0, 2.0]), pd.Series([1.0, 2.0]), kind, method)


def test_bad_threshold_and_kind() -> None:
    with pytest.raises(ValueError, match="numeric_threshold"):
        DriftSettings(numeric_threshold=float("nan"))
    with pytest.raises(ValueError, match="unknown column kind 'text'"):
        column_drift(pd.Series(["a"]), pd.Series(["a"]), "text", "jensenshannon")


def test_column_missing_from_current_is_named() -> None:
    reference = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    current = pd.DataFrame({"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"missing from the current data: \['b'\]"):
        dataset_drift(reference, current, ["a"], ["b"])
    with pytest.raises(ValueError, match=r"missing from the current data: \['b'\]"):
        evidently_drift(reference, current, ["a"], ["b"])


def test_non_numeric_dtype_in_a_numeric_column_is_not_evaluated() -> None:
    result = column_drift(pd.Series(["1", "2"], name="n"), pd.Series([1.0, 2.0], name="n"), "numeric", "ks")
    assert not result.evaluated and "numeric dtypes" in result.note


# --- API details ---------------------------------------------------------------------------


def test_directions_defaults_and_records() -> None:
    assert {m: method_direction(m) for m in DEFAULT_THRESHOLDS} == {
        "wasserstein": "distance",
        "jensenshannon": "distance",
        "psi": "distance",
        "ks": "p_value",
        "chisquare": "p_value",
    }
    assert DriftSettings().threshold("numeric") == 0.1 and DriftSettings("ks", "chisquare").threshold("categorical") == 0.05
    result = dataset_drift(
        pd.DataFrame({"a": np.arange(100.0), "b": ["x"] * 100}),
        pd.DataFrame({"a": np.arange(100.0) + 50, "b": [None] * 100}),
        ["a"],
        ["b"],
    )
    records = json.loads(json.dumps(result.to_records(), allow_nan=False))
    assert records[0]["drifted"] is True and records[1]["score"] is None and records[1]["evaluated"] is False
    assert result.share == 1.0


def test_seeded_sample_is_deterministic_and_keeps_small_frames() -> None:
    frame = pd.DataFrame({"a": np.arange(1_000)})
    first, second = seeded_sample(frame, 100, seed=5), seeded_sample(frame, 100, seed=5)
    pd.testing.assert_frame_equal(first, second)
    assert len(first) == 100 and first["a"].is_monotonic_increasing and first["a"].is_unique
    assert not seeded_sample(frame, 100, seed=6).equals(first)
    assert seeded_sample(frame, 1_000, seed=5) is frame


def test_report_html_on_a_sample() -> None:
    rng = np.random.default_rng(2)
    reference = pd.DataFrame({"a": rng.normal(0, 1, 3_000), "b": rng.choice(["x", "y"], 3_000), "gone": np.nan})
    current = pd.DataFrame({"a": rng.normal(1, 1, 2_000), "b": rng.choice(["x", "y"], 2_000), "gone": 1.0})
    html = evidently_report_html(reference, current, ["a", "gone"], ["b"], sample_rows=500, seed=1)
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    assert len(html) > 10_000


def test_merge_and_std_are_scipys_and_pandas_arrays_bit_for_bit() -> None:
    """The merge replaces SciPy's concatenate-sort-searchsorted; the std replaces np.std on a pandas
    Series. Both must give identical arrays/values, ties and signed zeros included."""
    rng = np.random.default_rng(5)
    workspace = drift._Workspace()
    pairs = [
        (rng.normal(size=5_000), rng.normal(0.1, size=4_000)),
        (rng.poisson(3, 5_000).astype(float), rng.poisson(3.2, 4_000).astype(float)),
        (np.array([0.0, -0.0, 1.0]), np.array([-0.0, 0.0, 0.0])),
        (np.array([1.0]), np.array([1.0])),
    ]
    for a, b in pairs:
        a, b = np.sort(a), np.sort(b)
        merged = np.sort(np.concatenate((a, b)), kind="mergesort")
        ours, a_count, b_count = drift._merged_cdfs(a, b, workspace)
        np.testing.assert_array_equal(ours, merged)
        np.testing.assert_array_equal(a_count, a.searchsorted(merged[:-1], "right"))
        np.testing.assert_array_equal(b_count, b.searchsorted(merged[:-1], "right"))
        assert drift._population_std(a, workspace) == float(np.std(pd.Series(a)))


def test_threads_give_the_same_result() -> None:
    reference, current = numeric_frames("wasserstein", 3_000)
    columns = list(reference.columns)
    one = dataset_drift(reference, current, columns, [], DriftSettings())
    assert dataset_drift(reference, current, columns, [], DriftSettings(), workers=3) == one
    with pytest.raises(ValueError, match="workers"):
        dataset_drift(reference, current, columns, [], DriftSettings(), workers=0)


def test_psi_fill_rule_with_rare_levels_and_bins() -> None:
    """Evidently fills PSI's empty shares with (smallest non-zero share) / 1e6 when that share is
    <= 1e-4, else with 1e-4: rare levels and sparse tail bins take the first branch."""
    rng = np.random.default_rng(9)
    n_ref, n_cur = 20_000, 15_000
    ref_levels = {"a": 12_000, "b": 7_998, "rare": 2}  # rare share 1e-4
    cur_levels = {"a": 9_000, "b": 5_990, "new": 10}
    reference = pd.DataFrame(
        {
            "level": _level_values(ref_levels, 0, rng),
            "tail": np.r_[rng.normal(0, 1, n_ref - 1), 40.0],  # one far value: empty bins between
        }
    )
    current = pd.DataFrame(
        {
            "level": _level_values(cur_levels, 0, rng),
            "tail": np.r_[rng.normal(0.05, 1, n_cur - 1), -30.0],
        }
    )
    settings = DriftSettings("psi", "psi")
    ours = dataset_drift(reference, current, ["tail"], ["level"], settings)
    _assert_same(ours, evidently_drift(reference, current, ["tail"], ["level"], settings, preset=False))
    shares = np.array([0.0, 5e-5, 0.5])
    np.testing.assert_array_equal(drift._fill_zeroes(shares), [5e-11, 5e-5, 0.5])
