"""ml_assets: a config-driven Dagster asset graph for ML pipelines.

Importing the package does nothing: definitions are built lazily by `ml_assets.definitions`.
"""

__version__ = "0.1.0"
