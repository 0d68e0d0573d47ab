"""Ingest: the raw layer (the source as received, PII treated) and the processed layer (rows
that meet the contract) with its quarantine (rows that do not, each with its reasons)."""


import datetime as dt
import os

import dagster as dg

from ml_assets.core import keys, quality
from ml_assets.core.contract import clean, expected_columns
from ml_assets.core.pii import PiiKeyMissing, apply_pii
from ml_assets.core.sources import SourceError, read_source
from ml_assets.defs.io_manager import TableBatch
from ml_assets.defs.resources import StorageResource
from ml_assets.defs.spec import TABLE_IO, PipelineSpec
from ml_assets.defs.tables import check_result, partitions_of, table_output


def build(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    cfg, names = spec.cfg, spec.names
    nullable_columns = [c for c, s in cfg.columns.items()
                        if s.nullable and c in expected_columns(cfg)]
    key_prefix = keys.index_prefix(names.processed.path)
    key_spec = keys.key_spec(cfg)

    @dg.asset(
        key=names.raw, partitions_def=spec.daily, backfill_policy=spec.backfill_policy,
        io_manager_key=TABLE_IO, group_name="raw", kinds={"pandas", "parquet"},
        owners=spec.owners, tags=spec.tags,
        description=(f"{cfg.name}: one day of the source as received, PII treated "
                     f"({dict(cfg.pii) or 'none'}), stored immutably (content-addressed)."),
        check_specs=spec.check_specs(names.raw, {
            "required_columns": (True, "Every column of the contract is present (blocking)."),
            "row_count": (False, "Rows per day within checks.min/max_rows_per_day."),
        }),
    )
    def raw(context: dg.AssetExecutionContext, storage: StorageResource):
        days = partitions_of(context)
        start = dt.date.fromisoformat(days[0])
        end = dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)
        uri = getattr(cfg.source, "uri", "")
        key = os.environ.get(cfg.pii_key_env) if cfg.pii else None
        batch = TableBatch()
        checks = [quality.columns_present_check(cfg),
                  quality.row_count_check(cfg.checks.min_rows_per_day, cfg.checks.max_rows_per_day)]
        try:
            source = read_source(cfg, start, end, storage.client_for(uri))
            for day in days:  # one day in memory at a time
                frame = apply_pii(source.frames[day], cfg.pii, key)
                batch.add(day, frame)
                for check in checks:
                    check.update(day, frame)
        except (SourceError, PiiKeyMissing) as exc:
            raise dg.Failure(description=str(exc)) from None
        yield table_output(
            context, storage, batch, names.raw,
            metadata={"source_files": len(source.files)},
            partition_metadata={
                d: {"source_files": ", ".join(source.files_by_day.get(d, []))[:1000]} for d in days},
        )
        for check in checks:
            yield check_result(check.result(), names.raw)

    @dg.multi_asset(
        name=names.processed_op,
        outs={
            "processed": dg.AssetOut(
                key=names.processed, io_manager_key=TABLE_IO, group_name="processed",
                kinds={"pandas", "parquet"}, owners=spec.owners, tags=spec.tags,
                description=f"{cfg.name}: rows that meet the contract, parsed to their dtypes."),
            "quarantine": dg.AssetOut(
                key=names.quarantine, io_manager_key=TABLE_IO, group_name="processed",
                kinds={"pandas", "parquet"}, owners=spec.owners, tags=spec.tags,
                description=f"{cfg.name}: rows that broke the contract, with a reason each."),
        },
        ins={"raw": dg.AssetIn(key=names.raw)},
        partitions_def=spec.daily, backfill_policy=spec.backfill_policy,
        check_specs=spec.check_specs(names.processed, {
            "schema": (True, "Columns and dtypes match the contract (blocking)."),
            "primary_key_unique": (True, "No two rows of a day share a primary key (blocking); "
                                   "a key an earlier partition holds is quarantined."),
            "primary_key_history": (False, "No stored later partition repeats a key this run "
                                    "kept; if one does, re-materialize it (named)."),
            "null_rate": (False, "Null rate of each nullable column <= checks.max_null_rate."),
            "value_ranges": (False, "No value outside min/max/allowed."),
            "quarantine_rate": (False, "Quarantined share of rows <= checks.max_quarantine_rate."),
        }),
    )
    def processed(context: dg.AssetExecutionContext, storage: StorageResource, raw):
        days = sorted(partitions_of(context))  # date order: see "first" in core/keys.py
        store = storage.tables()
        # keys of every stored partition but those this run rewrites, read once per run
        history = (keys.KeyHistory.load(store, key_prefix, cfg, exclude=days)
                   if cfg.primary_key else None)
        key_files: dict[str, bytes] = {}
        good, bad = TableBatch(), TableBatch()
        checks = [quality.schema_check(cfg), quality.key_unique_check(cfg.primary_key),
                  quality.null_rate_check(nullable_columns, cfg.checks.max_null_rate),
                  quality.value_range_check(cfg)]
        rate = quality.quarantine_rate_check(cfg.checks.max_quarantine_rate)
        extra: set[str] = set()
        for day in days:  # one day in memory at a time
            try:
                cleaned = clean(raw[day], cfg, day, history)
            except ValueError as exc:
                raise dg.Failure(description=str(exc)) from None
            if history is not None:
                history.add(day, cleaned.processed, cleaned.key_hashes)
                key_files[day] = keys.index_bytes(cleaned.processed, cleaned.key_hashes, key_spec)
            good.add(day, cleaned.processed)
            bad.add(day, cleaned.quarantine)
            extra.update(cleaned.extra_columns)
            for check in checks:
                check.update(day, cleaned.processed)
            rate.update(day, cleaned.processed, cleaned.quarantine)
        index_meta = {} if history is None else {
            "key_index_partitions_read": history.partitions_read,
            "key_index_stale": history.stale or "none"}
        yield table_output(context, storage, good, names.processed, output_name="processed",
                           metadata={"columns_not_in_contract": sorted(extra) or "none",
                                     **index_meta},
                           partition_metadata={d: {"quarantined_rows": p.rows}
                                               for d, p in bad.parts.items()})
        # the processed files are written now (the IO manager ran): their key index follows
        for day, data in key_files.items():
            store.put(keys.index_key(key_prefix, day), data)
        yield table_output(context, storage, bad, names.quarantine, output_name="quarantine",
                           metadata={"quarantined_rows": sum(p.rows for p in bad.parts.values())})
        for check in [*checks, rate]:
            yield check_result(check.result(), names.processed)
        yield check_result(quality.key_history_outcome(history), names.processed)

    return [raw, processed]
