"""The drift benchmark's parts: seeded cases (`cases`), the sides run in child processes
(`sides`), and the comparison and printout (`report`). Entry point: `benchmarks/drift_bench.py`."""
