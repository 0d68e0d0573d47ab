"""Column names and timestamp parsing shared by the source readers and the contract.

Every raw row carries where it came from (`_source_file`, `_source_row`), so any later error or
quarantine entry can name the file and the row.
"""

from __future__ import annotations

import pandas as pd

SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"
LINEAGE_COLUMNS = (SOURCE_FILE, SOURCE_ROW)
#: Raw rows the ingest could not place in their day (timestamp outside the pipeline's partitions,
#: unparseable, or outside their file's day) carry the reason here; the processed layer
#: quarantines them with it. Present in a raw partition only when some row has a reason.
INGEST_REASON = "_ingest_reason"


def to_naive_utc(values: pd.Series) -> pd.Series:
    """Parse timestamps (mixed formats and UTC offsets allowed) to naive UTC datetime64[ns].

    Unparseable values and values outside datetime64[ns]'s range (1677..2262) become NaT.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = values
        if getattr(parsed.dt, "tz", None) is None:
            parsed = parsed.dt.tz_localize("UTC")
    else:
        parsed = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
    parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    lo, hi = pd.Timestamp.min, pd.Timestamp.max
    outside = parsed.notna() & ((parsed < lo) | (parsed > hi))
    return parsed.mask(outside).astype("datetime64[ns]")
