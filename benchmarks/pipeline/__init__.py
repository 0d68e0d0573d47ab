"""The pipeline benchmark (benchmarks/run.py): cases, sides, report."""
