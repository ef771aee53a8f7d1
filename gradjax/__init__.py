"""gradjax: gradient techniques in JAX, each step the minimiser of a local model of the loss."""

from gradjax import attribution as attribution
from gradjax import em as em
from gradjax import gan as gan
from gradjax import newton as newton
from gradjax import optim as optim
from gradjax import regularizers as regularizers
from gradjax._status import Status as Status

__version__ = "0.1.0"

__all__ = ["Status", "attribution", "em", "gan", "newton", "optim", "regularizers"]
