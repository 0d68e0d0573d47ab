"""Run-level policies taken from a pipeline's config, in one place so the asset modules only
call them."""

import dagster as dg

from ml_assets.config import PipelineConfig
from ml_assets.defs.names import TAG_TRAINING


def backfill_policy(cfg: PipelineConfig) -> dg.BackfillPolicy:
    """`backfill.max_partitions_per_run` N -> `BackfillPolicy.multi_run(N)`: a large backfill is
    split into runs of at most N partitions, which the run coordinator runs concurrently within
    its limits. Unset (the default) -> `single_run()`: the whole range in one run."""
    n = cfg.backfill.max_partitions_per_run
    return dg.BackfillPolicy.single_run() if n is None else dg.BackfillPolicy.multi_run(n)


#: Run tag that marks a run as training `<pipeline>`; the production instance's run coordinator
#: admits one queued run per value at a time (`tag_concurrency_limits`).
TRAINING_TAG = TAG_TRAINING


def training_pool(cfg: PipelineConfig) -> str:
    """The concurrency pool of the pipeline's model step. The production instance gives every pool
    one slot (`concurrency.pools.default_limit: 1`), so one training per pipeline runs at a time,
    however the run was launched; different pipelines train in parallel."""
    return f"ml_assets_training_{cfg.name}"
