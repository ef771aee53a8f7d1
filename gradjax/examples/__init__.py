"""Runnable training examples: ``python -m gradjax.examples.<name>``."""

__all__: list[str] = []  # scripts only, nothing to import
