"""gradjax: gradient techniques in JAX, each step the minimiser of a local model of the loss."""

from gradjax import newton as newton

__version__ = "0.1.0"
