"""gradjax against the tools people use today: ``python -m benchmarks``."""
