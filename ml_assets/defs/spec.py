"""What every stage module needs to know about one pipeline: its config, its names, its
partitions and the policies its assets share."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import dagster as dg

from ml_assets.config import PipelineConfig
from ml_assets.defs.names import PipelineNames
from ml_assets.defs.policies import backfill_policy, training_pool

#: The IO manager resource key of every table asset.
TABLE_IO = "table_io_manager"


@dataclass(frozen=True)
class PipelineSpec:
    cfg: PipelineConfig
    names: PipelineNames = field(init=False)
    daily: dg.DailyPartitionsDefinition = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", PipelineNames(self.cfg.name))
        object.__setattr__(self, "daily", dg.DailyPartitionsDefinition(
            start_date=self.cfg.partitions.start.isoformat(),
            end_date=self.cfg.partitions.end.isoformat(),
        ))

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def owners(self) -> list[str]:
        return list(self.cfg.owners)

    @property
    def tags(self) -> dict[str, str]:
        return {"pipeline": self.cfg.name}

    @property
    def backfill_policy(self) -> dg.BackfillPolicy:
        """A backfill of many days is one run (one process start, one step per asset), or runs
        of `backfill.max_partitions_per_run` days when set."""
        return backfill_policy(self.cfg)

    @property
    def training_pool(self) -> str:
        return training_pool(self.cfg)

    def check_specs(self, key: dg.AssetKey, specs: dict[str, tuple[bool, str]]
                    ) -> list[dg.AssetCheckSpec]:
        """`{check name: (blocking, description)}` as AssetCheckSpecs on `key`."""
        return [dg.AssetCheckSpec(name, asset=key, blocking=blocking, description=desc)
                for name, (blocking, desc) in specs.items()]

    def partition_keys(self) -> list[str]:
        return self.daily.get_partition_keys()

    def in_partitions(self, day: dt.date) -> bool:
        return self.cfg.partitions.start <= day < self.cfg.partitions.end


def window(as_of: dt.date, days: int) -> list[str]:
    """The `days` daily partition keys ending at `as_of` (inclusive), oldest first."""
    return [(as_of - dt.timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]
