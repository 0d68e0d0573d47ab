"""ISO days (`YYYY-MM-DD`) as runs of consecutive days: one helper for every place that names
ranges of partitions (summaries, sensor notes, the file manifest, model lineage)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable


def contiguous_ranges(days: Iterable[str]) -> list[tuple[str, str]]:
    """['2024-03-01', '2024-03-02', '2024-03-05'] -> [('2024-03-01', '2024-03-02'), ('2024-03-05', '2024-03-05')]."""
    out: list[tuple[str, str]] = []
    for day in sorted(set(days)):
        if out and dt.date.fromisoformat(day) - dt.date.fromisoformat(out[-1][1]) == dt.timedelta(days=1):
            out[-1] = (out[-1][0], day)
        else:
            out.append((day, day))
    return out


def range_texts(days: Iterable[str]) -> list[str]:
    """['2013-01-01', '2013-01-02', '2013-01-04'] -> ['2013-01-01..2013-01-02', '2013-01-04']."""
    return [a if a == b else f"{a}..{b}" for a, b in contiguous_ranges(days)]


def ranges_text(days: Iterable[str]) -> str:
    """Days as compact ranges on one line: `2013-01-01..2013-01-03, 2013-01-07`."""
    return ", ".join(range_texts(days))
