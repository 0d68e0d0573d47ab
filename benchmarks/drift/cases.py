"""Seeded benchmark data: a reference frame (the training rows) and a current frame (one day),
written once as Parquet so every side reads exactly the same bytes.

Numeric columns cycle through five shapes (normal, lognormal, exponential, uniform, and a
Poisson count with fewer than 20 distinct values), each with 1% NaN; the first numeric column also
holds a few +/-inf. Categorical columns are `str` with 2% missing and 8, 40 or 300 levels of
Zipf-like shares. What drift is planted, by column position:

- numeric i % 4 == 0: clear (a shift of half a standard deviation, or doubled scale);
- numeric i % 4 == 1: slight (a shift of 0.05 standard deviations: below the default thresholds);
- categorical j % 2 == 0: clear (shares reversed, plus 3% of a level the reference never had);
- everything else: none (an independent sample of the same distribution).

Each column has its own generator seeded from (seed, side, column), so a column's values do not
depend on how many other columns there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

NUMERIC_SHAPES = ("normal", "lognormal", "exponential", "uniform", "counts")
LEVEL_COUNTS = (8, 40, 300)


@dataclass(frozen=True)
class Case:
    rows: int  # current rows
    reference_rows: int
    columns: int
    categorical: int
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.categorical <= self.columns:
            raise ValueError(f"categorical columns ({self.categorical}) must be between 0 and columns ({self.columns})")
        if min(self.rows, self.reference_rows) < 1:
            raise ValueError("rows and reference rows must be positive")

    @property
    def name(self) -> str:
        return f"drift_{self.rows}x{self.columns}_ref{self.reference_rows}"

    @property
    def numeric(self) -> list[str]:
        n = self.columns - self.categorical
        return [f"num_{i:02d}_{NUMERIC_SHAPES[i % len(NUMERIC_SHAPES)]}" for i in range(n)]

    @property
    def categorical_columns(self) -> list[str]:
        return [f"cat_{j:02d}_{LEVEL_COUNTS[j % len(LEVEL_COUNTS)]}" for j in range(self.categorical)]

    def planted(self) -> dict[str, str]:
        """The drift each column was given: "clear", "slight" or "none"."""
        plan = {col: ("clear", "slight", "none", "none")[i % 4] for i, col in enumerate(self.numeric)}
        plan.update({col: ("clear", "none")[j % 2] for j, col in enumerate(self.categorical_columns)})
        return plan


def _rng(case: Case, side: int, column: int) -> np.random.Generator:
    return np.random.default_rng([case.seed, side, column])


def _numeric(shape: str, n: int, drift: str, rng: np.random.Generator) -> np.ndarray:
    shift = {"clear": 0.5, "slight": 0.05, "none": 0.0}[drift]
    if shape == "normal":
        values = rng.normal(50.0 + 10.0 * shift, 10.0, n)
    elif shape == "lognormal":
        values = rng.lognormal(3.0, 0.6, n) * (2.0 if drift == "clear" else 1.0 + shift)
    elif shape == "exponential":
        values = rng.exponential(5.0, n) + 5.0 * shift
    elif shape == "uniform":
        values = rng.uniform(0.0, 100.0, n) + 28.9 * shift
    else:
        values = rng.poisson(3.0 + 3.0 * shift, n).astype(np.float64)
    values[rng.random(n) < 0.01] = np.nan
    return values


def _levels(k: int) -> tuple[np.ndarray, np.ndarray]:
    names = np.array([f"L{i:04d}" for i in range(k)], dtype=object)
    shares = 1.0 / np.arange(1, k + 1) ** 1.1
    return names, shares / shares.sum()


def _categorical(k: int, n: int, drift: str, rng: np.random.Generator) -> pd.Series:
    names, shares = _levels(k)
    if drift == "clear":
        names = np.concatenate([names, np.array(["UNSEEN"], dtype=object)])
        shares = np.concatenate([shares[::-1] * 0.97, [0.03]])
    values = names[rng.choice(names.size, n, p=shares)]
    values[rng.random(n) < 0.02] = None
    return pd.Series(pd.array(values, dtype="str"))


def build_frame(case: Case, side: str) -> pd.DataFrame:
    """The reference (side "reference") or current (side "current") frame of a case."""
    n = case.reference_rows if side == "reference" else case.rows
    side_id = 0 if side == "reference" else 1
    plan = case.planted()
    data: dict[str, np.ndarray | pd.Series] = {}
    for i, col in enumerate(case.numeric):
        drift = plan[col] if side == "current" else "none"
        values = _numeric(NUMERIC_SHAPES[i % len(NUMERIC_SHAPES)], n, drift, _rng(case, side_id, i))
        if i == 0:
            values[:3] = [np.inf, -np.inf, np.inf]
        data[col] = values
    for j, col in enumerate(case.categorical_columns):
        drift = plan[col] if side == "current" else "none"
        data[col] = _categorical(LEVEL_COUNTS[j % len(LEVEL_COUNTS)], n, drift, _rng(case, side_id, 1000 + j))
    return pd.DataFrame(data)


def write_case(case: Case, directory: Path) -> dict[str, str]:
    """Write reference.parquet and current.parquet into `directory`; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for side in ("reference", "current"):
        path = directory / f"{side}.parquet"
        build_frame(case, side).to_parquet(path, index=False)
        paths[side] = str(path)
    return paths
