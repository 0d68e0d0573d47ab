"""Ingest: the raw layer (the source as received, PII treated) and the processed layer (rows
that meet the contract) with its quarantine (rows that do not, each with its reasons).

Raw writes nothing of a run when a blocking check fails. Each source file is read and checked on
its own (`core.sources`); a day is *blocked* when one of its files misses a required column, has
an unparseable header, has columns outside the contract under `extra_columns: fail`, or cannot
be read. The step then yields its check results (`required_columns` failed, naming partition,
file and column; `readable_files` naming quarantined files) and fails with one line naming the
first blocked partition and file, without yielding its output: no Parquet file is written and no
partition of the run is recorded as materialized, so nothing downstream can read a partial day,
and the previous materialization of a day (if any) stays the current one. Dagster records one
output per run for all its partitions, so a blocked day stops the whole run: run the other days
on their own, or fix the file (a new version of it is picked up by the new-data sensor).

With a `hash` PII rule the key must be the one the pipeline's stored data was hashed with, or an
explicit rotation (`core.pii`): checked before anything is read, recorded just before the output
is written; each partition's metadata names the key's fingerprint (`pii_key_fingerprint`).
"""


import datetime as dt
import os

import dagster as dg

from ml_assets.config import FilesSource
from ml_assets.core import keys, pii, quality
from ml_assets.core.contract import clean_days, expected_columns
from ml_assets.core.pii import PiiKeyMissing, PiiKeyRefused, apply_pii, key_missing
from ml_assets.core.sources import SourceError, read_source
from ml_assets.core.storage import put_all
from ml_assets.defs.io_manager import TableBatch
from ml_assets.defs.resources import StorageResource
from ml_assets.defs.spec import TABLE_IO, PipelineSpec
from ml_assets.defs.tables import check_result, partitions_of, table_output

BLOCKING_KINDS = ("columns", "unreadable")


def _extra_summary(extra: dict[str, set[str]]) -> str:
    if not extra:
        return "none"
    return ", ".join(f"{c} ({len(fs)} file{'s' if len(fs) > 1 else ''})"
                     for c, fs in sorted(extra.items()))[:2000]


def build(spec: PipelineSpec) -> list[dg.AssetsDefinition]:
    cfg, names = spec.cfg, spec.names
    nullable_columns = [c for c, s in cfg.columns.items()
                        if s.nullable and c in expected_columns(cfg)]
    files = isinstance(cfg.source, FilesSource)
    key_prefix = keys.index_prefix(names.processed.path)
    key_spec = keys.key_spec(cfg)

    @dg.asset(
        key=names.raw, partitions_def=spec.daily, backfill_policy=spec.backfill_policy,
        io_manager_key=TABLE_IO, group_name="raw", kinds={"pandas", "parquet"},
        owners=spec.owners, tags=spec.tags,
        description=(f"{cfg.name}: one day of the source as received, PII treated "
                     f"({dict(cfg.pii) or 'none'}), columns outside the contract "
                     f"{'kept' if cfg.extra_columns == 'keep' else 'never stored'}, stored "
                     "immutably (content-addressed)."),
        check_specs=spec.check_specs(names.raw, {
            "required_columns": (True, "Every source file has every column of the contract and a "
                                       "parseable header (blocking; checked per file)."),
            **({"readable_files": (False, "No source file is quarantined as a file (unreadable, "
                                          "or no row inside the partitions).")} if files else {}),
            "row_count": (False, "Rows per day within checks.min/max_rows_per_day."),
        }),
    )
    def raw(context: dg.AssetExecutionContext, storage: StorageResource):
        days = partitions_of(context)
        start = dt.date.fromisoformat(days[0])
        end = dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)
        uri = getattr(cfg.source, "uri", "")
        key = os.environ.get(cfg.pii_key_env) if cfg.pii else None
        missing_key = key_missing(cfg.pii, key, cfg.pii_key_env)
        if missing_key is not None:  # before anything is read or written
            raise dg.Failure(description=str(missing_key))
        # the key must be the one the stored data was hashed with (or an explicit rotation)
        hashing = bool(pii.hashed_columns(cfg.pii))
        rotate = os.environ.get(pii.ROTATE_ENV) if hashing else None
        if hashing:
            try:
                pii.check_key(storage.tables(), cfg.name, key, cfg.pii_key_env, rotate)
            except PiiKeyRefused as exc:
                raise dg.Failure(description=f"raw: nothing written; {exc}") from None
        batch = TableBatch()
        columns = quality.columns_present_check(cfg)
        row_count = quality.row_count_check(cfg.checks.min_rows_per_day, cfg.checks.max_rows_per_day)
        extra: dict[str, set[str]] = {}
        blocked: dict[str, list] = {}
        problems: list = []
        per_day: dict[str, dict] = {}
        outside = 0
        try:
            source = read_source(cfg, start, end, storage.client_for(uri), store=storage.tables())
            problems.extend(source.problems)
            for day in days:  # one day in memory at a time
                rows = source.day(day)
                columns.update(day, rows.frame, rows.problems)
                problems.extend(rows.problems)
                for file, cols in rows.extra.items():
                    for c in cols:
                        extra.setdefault(c, set()).add(file)
                stoppers = [p for p in rows.problems if p.kind in BLOCKING_KINDS]
                if stoppers:
                    blocked[day] = stoppers
                    continue
                frame = apply_pii(rows.frame, cfg.pii, key, cfg.pii_key_env)
                batch.add(day, frame)
                row_count.update(day, frame)
                outside += rows.placed_rows
                # per partition; Dagster copies run-level metadata onto every partition's event,
                # so run totals below use other names than these
                meta = {"source_files": ", ".join(rows.files)[:1000],
                        "rows_outside_day": rows.placed_rows}
                if hashing:
                    meta["pii_key_fingerprint"] = pii.key_fingerprint(key)
                if rows.extra:
                    meta["extra_columns"] = ", ".join(sorted({c for cs in rows.extra.values()
                                                              for c in cs}))[:1000]
                    meta["extra_columns_files"] = len(rows.extra)
                per_day[day] = meta
        except (SourceError, PiiKeyMissing) as exc:
            raise dg.Failure(description=str(exc)) from None
        readable = quality.readable_files(problems)
        results = [check_result(columns.result(), names.raw),
                   check_result(row_count.result(), names.raw)]
        if files:
            results.insert(1, dg.AssetCheckResult(
                check_name="readable_files", asset_key=names.raw, passed=readable.passed,
                severity=dg.AssetCheckSeverity.WARN,
                metadata=check_result(readable, names.raw).metadata))
        if not readable.passed:
            context.log.warning(f"{cfg.name}: source files quarantined as files: "
                                + "; ".join(readable.details["files"].splitlines()[:5]))
        if blocked:
            yield from results
            first_day = sorted(blocked)[0]
            more = len(blocked) - 1
            raise dg.Failure(description=(
                f"raw: nothing written; partition {first_day} is blocked by its source file: "
                f"{blocked[first_day][0].message}"
                + (f" (and {more} more partition(s): {', '.join(sorted(blocked)[1:6])}"
                   f"{' ...' if more > 5 else ''})" if more else "")))
        key_meta = {}
        if hashing:  # recorded just before the output is written; checked again (another run)
            try:
                decision = pii.remember_key(storage.tables(), cfg.name, key, cfg.pii_key_env,
                                            rotate, by=f"run {context.run_id}")
            except PiiKeyRefused as exc:
                raise dg.Failure(description=f"raw: nothing written; {exc}") from None
            if decision.action == "rotate":
                key_meta["pii_key_rotated_from"] = decision.previous
                context.log.warning(
                    f"{cfg.name}: PII key rotated ({pii.ROTATE_ENV}): {cfg.pii_key_env} fingerprint "
                    f"{decision.previous} -> {decision.fingerprint}, recorded in "
                    f"{pii.key_record_key(cfg.name)}; days materialized with the old key do not "
                    "join with new ones until raw is re-materialized for them")
            elif decision.action == "first":
                context.log.info(f"{cfg.name}: PII key fingerprint {decision.fingerprint} "
                                 f"recorded in {pii.key_record_key(cfg.name)}")
        yield table_output(
            context, storage, batch, names.raw,
            metadata={"source_files_listed": len(source.files),
                      "source_files_read": len(source.read),
                      "source_files_scanned": len(source.scanned),
                      "columns_outside_contract": _extra_summary(extra),
                      "columns_outside_contract_count": len(extra),
                      "columns_outside_contract_action": cfg.extra_columns,
                      "rows_outside_day_in_run": outside,
                      "files_quarantined": readable.observed, **key_meta},
            partition_metadata=per_day,
        )
        yield from results

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
        # parsed a batch of days at a time (core.batches bounds the rows held), keys and
        # quarantine day by day; clean_days adds each day's kept keys to the history
        cleaned_days = clean_days(((day, raw[day]) for day in days), cfg, history)
        while True:
            try:
                day, cleaned = next(cleaned_days)
            except StopIteration:
                break
            except ValueError as exc:
                raise dg.Failure(description=str(exc)) from None
            if history is not None:
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
        put_all(store, [(keys.index_key(key_prefix, day), data) for day, data in key_files.items()])
        yield table_output(context, storage, bad, names.quarantine, output_name="quarantine",
                           metadata={"quarantined_rows": sum(p.rows for p in bad.parts.values())})
        for check in [*checks, rate]:
            yield check_result(check.result(), names.processed)
        yield check_result(quality.key_history_outcome(history), names.processed)

    return [raw, processed]
