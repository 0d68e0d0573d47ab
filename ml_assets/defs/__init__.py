"""Dagster definitions: thin assets, checks, resources and the IO manager."""
