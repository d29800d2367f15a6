"""Measured comparisons; each script writes its table into benchmarks/RESULTS.md."""
