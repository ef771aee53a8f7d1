"""Runnable training examples: ``python -m gradjax.examples.<name>``."""
