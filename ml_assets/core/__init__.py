"""Pure data logic: no Dagster import anywhere under this package."""
