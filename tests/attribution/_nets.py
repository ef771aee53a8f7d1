"""The small network the attribution tests share, in JAX and as its PyTorch twin."""

import jax.numpy as jnp
import numpy as np
import pytest


def small_net(params, x):
    """A smooth two-layer network with a scalar output."""
    w1, b1, w2 = params
    return jnp.tanh(x @ w1 + b1) @ w2


def torch_twin(params):
    """The same network as ``small_net`` in PyTorch (float64), identical weights."""
    torch = pytest.importorskip("torch")
    w1, b1, w2 = (torch.from_numpy(np.array(p)) for p in params)

    class Net(torch.nn.Module):
        def forward(self, x):
            return (torch.tanh(x @ w1 + b1) @ w2)[:, None]

    return torch, Net()
