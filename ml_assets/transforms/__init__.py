"""Feature transforms named in pipeline configs: pure functions DataFrame -> DataFrame."""
