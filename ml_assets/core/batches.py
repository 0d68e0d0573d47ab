"""Days in batches: one vectorised pass over several days' rows instead of one small pass a day.

A step over many partitions (a backfill) pays pandas' and LightGBM's fixed cost per call once per
day when it works a day at a time: a year of flights is 365 calls of under 1,000 rows each. Where
the work is row-wise (each output row depends only on its input row: scoring, row-wise transforms),
the days can be stacked, worked on in one call, and cut back into days by position, with the same
result as day by day. `in_batches` does that with a bound on the rows held at once
(`BATCH_ROWS`), so a step never holds more than one batch of inputs and outputs: a day larger than
the bound is a batch of its own, exactly as before.

Only days with the same columns and dtypes are stacked (a stored partition from before a schema
change is a batch of its own), so stacking never changes a dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import pandas as pd

BATCH_ROWS = 100_000


def _signature(frame: pd.DataFrame) -> tuple:
    return tuple(zip(map(str, frame.columns), map(str, frame.dtypes), strict=True))


def batches(days: Iterable[tuple[str, pd.DataFrame]], max_rows: int = BATCH_ROWS
            ) -> Iterator[list[tuple[str, pd.DataFrame]]]:
    """Consecutive (day, frame) pairs grouped: at most `max_rows` rows a group (a bigger day is a
    group of its own), one column signature a group, the days' order kept."""
    group: list[tuple[str, pd.DataFrame]] = []
    rows, signature = 0, None
    for day, frame in days:
        sig = _signature(frame)
        if group and (rows + len(frame) > max_rows or sig != signature):
            yield group
            group, rows = [], 0
        group.append((day, frame))
        rows += len(frame)
        signature = sig
    if group:
        yield group


def stack(group: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    frames = [frame for _, frame in group]
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    return pd.concat(frames, ignore_index=True)


def cut(frame: pd.DataFrame, group: list[tuple[str, pd.DataFrame]]) -> list[tuple[str, pd.DataFrame]]:
    """`frame` (one row per input row of the group, in order) cut back into the group's days."""
    expected = sum(len(f) for _, f in group)
    if len(frame) != expected:
        raise ValueError(f"a batch of {len(group)} day(s) with {expected} rows came back with "
                         f"{len(frame)} rows; a batched function must keep every row in order")
    if len(group) == 1:
        return [(group[0][0], frame.reset_index(drop=True))]
    out, start = [], 0
    for day, part in group:
        out.append((day, frame.iloc[start:start + len(part)].reset_index(drop=True)))
        start += len(part)
    return out


def in_batches(days: Iterable[tuple[str, pd.DataFrame]],
               fn: Callable[[pd.DataFrame], pd.DataFrame],
               max_rows: int = BATCH_ROWS,
               on_error: Callable[[str, Exception], Exception] | None = None,
               ) -> Iterator[tuple[str, pd.DataFrame]]:
    """(day, fn(frame)) for each day, computed a batch of days at a time (see the module).

    When `fn` raises on a batch of several days, the batch is retried day by day so that the
    error names the day it comes from; `on_error(day, exc)` turns that into the exception to
    raise (the original is its cause)."""
    for group in batches(days, max_rows):
        yield from run_group(group, fn, on_error)


def run_group(group: list[tuple[str, pd.DataFrame]],
              fn: Callable[[pd.DataFrame], pd.DataFrame],
              on_error: Callable[[str, Exception], Exception] | None = None,
              ) -> Iterator[tuple[str, pd.DataFrame]]:
    """(day, fn(frame)) for the days of one group of `batches`: one call on the stacked days, or
    day by day when that call raises (see `in_batches`)."""
    try:
        result = fn(stack(group))
    except Exception as exc:
        if len(group) == 1:
            if on_error is None:
                raise
            raise on_error(group[0][0], exc) from exc
        for day, frame in group:  # find the day at fault, and keep the days before it
            try:
                one = fn(frame.reset_index(drop=True))
            except Exception as day_exc:
                if on_error is None:
                    raise
                raise on_error(day, day_exc) from day_exc
            yield day, one.reset_index(drop=True)
        return  # every day alone succeeded: day by day is the reference result
    yield from cut(result, group)
