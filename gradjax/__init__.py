"""gradjax: gradient techniques in JAX, each step the minimiser of a local model of the loss."""

from gradjax import newton as newton
from gradjax import optim as optim

__version__ = "0.1.0"
