"""Primary keys across the pipeline's history, not only within a day.

Each processed partition has a small key index in the table store, written right after the
partition itself: `_key_index/<processed asset path>/<partition>.parquet`, one row per processed
row with `key_hash` (uint64, `pandas.util.hash_pandas_object` of the key columns as the contract
types them), `_source_file` and `_source_row`. A run reads the index of every stored partition once
(`KeyHistory.load`), leaves out the partitions it rewrites (a re-run of a day never collides with
its own earlier keys), and adds each partition it processes, in date order.

What "first" means: the row in the **earliest partition** (partition keys are ISO dates, compared
as text) that holds the key; within a partition, the first row in source order. A key already held
by an earlier partition is quarantined, naming that partition, file and row. The outcome does not
depend on the order partitions are processed in, with one caveat: when a run processes a day that
is *earlier* than a stored partition holding the same key, the earlier day keeps its row (it is the
first) and the later partition, already written, is reported (`later`) so that re-materializing it
quarantines the repeat. Once the reported partitions are re-materialized, the stored result is the
one a single in-order backfill gives.

Two limits, by design: the 64-bit hash could in principle make two different keys collide (with a
million keys, odds about 3 in 10^8); and runs that execute concurrently (chunks of one backfill)
do not see each other's keys, which the later run's `later` report shows.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ml_assets.config import PipelineConfig
from ml_assets.core.frames import SOURCE_FILE, SOURCE_ROW

KEY_HASH = "key_hash"
INDEX_FOLDER = "_key_index"
_SPEC_META = b"ml_assets.key_spec"
_SCHEME = "pandas.util.hash_pandas_object/v1"


def index_prefix(asset_path: Iterable[str]) -> str:
    """Store folder of the key index of a processed asset (`asset_path`: its key path)."""
    return "/".join([INDEX_FOLDER, *asset_path])


def index_key(prefix: str, partition: str) -> str:
    return f"{prefix}/{partition}.parquet"


def key_spec(config: PipelineConfig) -> str:
    """The key columns, their contract dtypes and the hash scheme: index files written under
    another spec hash other values, so they are not compared (see `KeyHistory.stale`)."""
    return json.dumps({"scheme": _SCHEME, "columns": [
        [c, config.columns[c].dtype] for c in config.primary_key]})


def key_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One uint64 per row of `frame[columns]`; equal keys (same dtypes) hash equal."""
    if not len(frame):
        return np.empty(0, dtype=np.uint64)
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy(dtype=np.uint64)


def index_bytes(processed: pd.DataFrame, hashes: np.ndarray, spec: str) -> bytes:
    """The key index file of one processed partition."""
    table = pa.table({
        KEY_HASH: pa.array(hashes, type=pa.uint64()),
        SOURCE_FILE: pa.array(processed[SOURCE_FILE].astype(str), type=pa.string()),
        SOURCE_ROW: pa.array(processed[SOURCE_ROW].to_numpy(dtype="int64"), type=pa.int64()),
    }).replace_schema_metadata({_SPEC_META: spec.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


@dataclass
class _Chunk:
    """Keys sorted by hash, with where each came from (codes into KeyHistory's lists)."""

    hashes: np.ndarray  # uint64, sorted
    part: np.ndarray  # int32
    file: np.ndarray  # int32
    row: np.ndarray  # int64

    @staticmethod
    def sorted(hashes, part, file, row) -> _Chunk:
        order = np.argsort(hashes, kind="stable")
        return _Chunk(hashes[order], part[order], file[order], row[order])

    def find(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of `hashes` found here, position of each found one in this chunk)."""
        if not len(self.hashes):
            return np.zeros(len(hashes), dtype=bool), np.empty(0, dtype=np.int64)
        pos = np.searchsorted(self.hashes, hashes)
        pos = np.minimum(pos, len(self.hashes) - 1)
        found = self.hashes[pos] == hashes
        return found, pos[found]


def _concat(chunks: list[_Chunk]) -> _Chunk:
    return _Chunk.sorted(*(np.concatenate([getattr(c, f) for c in chunks])
                           for f in ("hashes", "part", "file", "row")))


@dataclass
class KeyHistory:
    """Keys of stored partitions and of the partitions a run has processed so far."""

    primary_key: list[str]
    partitions: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    #: index files not compared because they were written under another key spec
    stale: list[str] = field(default_factory=list)
    #: partitions whose index was read
    partitions_read: int = 0
    #: run partition -> {later stored partition: keys it repeats}; re-materialize those
    later: dict[str, dict[str, int]] = field(default_factory=dict)
    _stored: _Chunk | None = None
    _run: list[_Chunk] = field(default_factory=list)
    _last_added: str = ""
    _codes: dict[str, dict[str, int]] = field(default_factory=lambda: {"part": {}, "file": {}})

    def _code(self, kind: str, value: str) -> int:
        codes = self._codes[kind]
        if value not in codes:
            codes[value] = len(codes)
            (self.partitions if kind == "part" else self.files).append(value)
        return codes[value]

    # ------------------------------------------------------------ building
    @classmethod
    def load(cls, store: Any, prefix: str, config: PipelineConfig, exclude: Iterable[str] = (),
             threads: int = 8) -> KeyHistory:
        """Read the key index of every stored partition except `exclude` (the partitions the
        run rewrites), once. `store`: an ObjectStore (local folder or S3)."""
        history = cls(list(config.primary_key))
        spec = key_spec(config)
        skip = set(exclude)
        wanted: list[tuple[str, str]] = []
        for key in store.list(prefix):
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".parquet") and name[: -len(".parquet")] not in skip:
                wanted.append((name[: -len(".parquet")], key))
        wanted.sort()
        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(wanted)))) as pool:
            blobs = list(pool.map(lambda item: store.get(item[1]), wanted))
        chunks = []
        for (partition, _), data in zip(wanted, blobs, strict=True):
            table = pq.read_table(io.BytesIO(data), read_dictionary=[SOURCE_FILE])
            if (table.schema.metadata or {}).get(_SPEC_META, b"").decode() != spec:
                history.stale.append(partition)
                continue
            history.partitions_read += 1
            chunks.append(history._chunk(partition, table))
        if chunks:
            merged = _concat(chunks)
            # keep the earliest partition of a hash that several stored partitions hold
            # (partition codes were assigned in date order, so the smallest code is earliest)
            order = np.lexsort((merged.part, merged.hashes))
            merged = _Chunk(merged.hashes[order], merged.part[order], merged.file[order],
                            merged.row[order])
            first = np.ones(len(merged.hashes), dtype=bool)
            first[1:] = merged.hashes[1:] != merged.hashes[:-1]
            history._stored = _Chunk(merged.hashes[first], merged.part[first],
                                     merged.file[first], merged.row[first])
        return history

    def _chunk(self, partition: str, table: pa.Table) -> _Chunk:
        n = table.num_rows
        part = np.full(n, self._code("part", partition), dtype=np.int32)
        files = table.column(SOURCE_FILE).combine_chunks()
        if n and isinstance(files.type, pa.DictionaryType):
            local = np.array([self._code("file", f) for f in files.dictionary.to_pylist()],
                             dtype=np.int32)
            file = local[files.indices.to_numpy(zero_copy_only=False)] if len(local) else \
                np.zeros(n, dtype=np.int32)
        else:
            file = np.array([self._code("file", f) for f in files.to_pylist()], dtype=np.int32)
        hashes = table.column(KEY_HASH).to_numpy().astype(np.uint64)
        rows = table.column(SOURCE_ROW).to_numpy().astype(np.int64)
        return _Chunk(hashes, part, file.astype(np.int32), rows)

    def add(self, partition: str, processed: pd.DataFrame, hashes: np.ndarray) -> None:
        """Add the keys a processed partition kept. Partitions are added in ascending order."""
        if self._last_added and partition <= self._last_added:
            raise ValueError(f"key history: partition {partition} added after {self._last_added}; "
                             "a run adds its partitions in ascending order")
        self._last_added = partition
        n = len(hashes)
        # factorize (a hash table), not np.unique: sorting a million file names took a second
        inverse, uniques = pd.factorize(processed[SOURCE_FILE], use_na_sentinel=False)
        local = np.array([self._code("file", str(f)) for f in uniques], dtype=np.int32)
        chunk = _Chunk.sorted(
            np.asarray(hashes, dtype=np.uint64),
            np.full(n, self._code("part", partition), dtype=np.int32),
            local[inverse] if n else np.empty(0, dtype=np.int32),
            processed[SOURCE_ROW].to_numpy(dtype="int64"))
        self._run.append(chunk)
        # merge the newest chunks while the newer is at least as large as the one before it: a
        # year of days stays in about log2(365) sorted chunks, each key moved about log2 times
        while len(self._run) > 1 and len(self._run[-1].hashes) >= len(self._run[-2].hashes):
            newer = self._run.pop()
            self._run[-1] = _concat([self._run[-1], newer])

    # ------------------------------------------------------------ asking
    def repeats(self, partition: str, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the keys of `partition`'s rows: (mask of those an earlier partition holds,
        'partition P file F row R' of that first holder, one per masked row)."""
        n = len(hashes)
        best = np.full(n, -1, dtype=np.int64)  # index into `where`
        where: list[tuple[str, str, int]] = []
        later: list[tuple[int, str]] = []

        def consider(chunk: _Chunk, stored: bool) -> None:
            found, pos = chunk.find(hashes)
            for i, p in zip(np.flatnonzero(found).tolist(), pos.tolist(), strict=True):
                holder = self.partitions[chunk.part[p]]
                if holder > partition:
                    if stored:  # a run adds its days in order: only stored ones are later
                        later.append((i, holder))
                    continue
                if holder == partition:
                    continue
                entry = (holder, self.files[chunk.file[p]], int(chunk.row[p]))
                if best[i] < 0 or entry < where[best[i]]:
                    best[i] = len(where)
                    where.append(entry)

        if self._stored is not None:
            consider(self._stored, stored=True)
        for chunk in self._run:
            consider(chunk, stored=False)
        mask = best >= 0
        for i, holder in later:  # this partition keeps the row (it is the first): report holder
            if not mask[i]:
                counts = self.later.setdefault(partition, {})
                counts[holder] = counts.get(holder, 0) + 1
        text = np.array([f"partition {p} file {f} row {r}" for p, f, r in
                         (where[b] for b in best[mask])], dtype=object)
        return mask, text

    def later_partitions(self) -> list[str]:
        """Stored partitions that repeat keys this run kept: re-materialize them."""
        return sorted({q for qs in self.later.values() for q in qs})
