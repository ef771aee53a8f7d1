"""Many targets in one call: each method with ``targets`` equals the loop over targets."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax import Status
from gradjax.attribution import (
    expected_gradients,
    integrated_gradients,
    layer_integrated_gradients,
    smooth_grad,
)

KEY = jax.random.key(3)
TARGETS = np.array([2, 0, 3, 2])  # a repeated target too
CHUNKS = [None, 1, 3, 8, 9]  # fewer pairs than targets, a remainder, more than all


def params(dtype=jnp.float64):
    k1, k2 = jax.random.split(jax.random.key(0))
    return jax.random.normal(k1, (5, 6), dtype), jax.random.normal(k2, (6, 4), dtype)


def net(p, x):
    """A smooth network with 4 outputs."""
    return jnp.tanh(x @ p[0]) @ p[1]


def tree_net(p, t):
    return net(p, jnp.concatenate([t["a"], t["b"]]))


def x_and_tree():
    x = jnp.linspace(-1.0, 1.2, 5)
    return x, {"a": x[:2], "b": x[2:]}


def loop(method, p, fun, targets):
    """The reference: one scalar call per target, stacked."""
    return jax.tree.map(
        lambda *a: jnp.stack(a), *[method(lambda z, t=int(t): fun(p, z)[t]) for t in targets]
    )


def assert_trees_close(got, want, tol=1e-6):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=tol, atol=tol), got, want)


@functools.cache
def jitted(name, chunk_size):
    """One jitted multi-target call per method and chunk size."""
    p_fun = {"ig": net, "ig_tree": tree_net}
    if name.startswith("ig"):
        fun = p_fun[name]
        return jax.jit(
            lambda p, x: integrated_gradients(
                lambda z: fun(p, z),
                x,
                steps=6,
                method="gauss_legendre",
                targets=TARGETS,
                chunk_size=chunk_size,
                return_gap=True,
            )
        )
    raise KeyError(name)


@pytest.mark.parametrize("chunk_size", CHUNKS)
def test_integrated_gradients_targets_equal_the_loop_with_per_target_completeness(chunk_size):
    with jax.enable_x64(True):
        p, (x, tree) = params(), x_and_tree()
        for fun, z, name in ((net, x, "ig"), (tree_net, tree, "ig_tree")):
            got = jitted(name, chunk_size)(p, z)
            want = loop(
                lambda f, z=z: integrated_gradients(f, z, steps=6, method="gauss_legendre"),
                p,
                fun,
                TARGETS,
            )
            assert_trees_close(got.attributions, want)
            # The gap is per target: Σ attributions[k] − (f_k(x) − f_k(0)).
            total = sum(jnp.sum(a.reshape(len(TARGETS), -1), 1) for a in jax.tree.leaves(want))
            zero = jax.tree.map(jnp.zeros_like, z)
            change = (fun(p, z) - fun(p, zero))[TARGETS]
            np.testing.assert_allclose(got.completeness_gap, total - change, atol=1e-12)
            assert got.completeness_gap.shape == (len(TARGETS),)
            assert int(got.status) == Status.SUCCESS and bool(got.converged)


def test_targets_are_complete_as_steps_grow_and_jit_equals_eager():
    with jax.enable_x64(True):
        p, (x, _) = params(), x_and_tree()
        fun = lambda z: net(p, z)  # noqa: E731
        result = integrated_gradients(
            fun, x, targets=np.arange(4), steps=24, method="gauss_legendre", return_gap=True
        )
        assert np.all(np.abs(result.completeness_gap) < 1e-10)
        jitted_result = jax.jit(
            lambda x: integrated_gradients(
                fun, x, targets=jnp.arange(4), steps=24, method="gauss_legendre", return_gap=True
            )
        )(x)
        assert_trees_close(jitted_result, result, 1e-12)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("chunk_size", [None, 3, 9])
def test_smooth_grad_targets_equal_the_loop_on_the_same_noise(squared, chunk_size):
    with jax.enable_x64(True):
        p, (x, _) = params(), x_and_tree()
        opts = dict(stdev=0.3, num_samples=5, squared=squared)
        got = jax.jit(
            lambda x: smooth_grad(
                KEY, lambda z: net(p, z), x, targets=TARGETS, chunk_size=chunk_size, **opts
            )
        )(x)
        want = loop(lambda f: smooth_grad(KEY, f, x, **opts), p, net, TARGETS)
        assert_trees_close(got, want)


@pytest.mark.parametrize("chunk_size", [None, 2, 9])
def test_expected_gradients_targets_equal_the_loop_on_the_same_draws(chunk_size):
    with jax.enable_x64(True):
        p, (x, _) = params(), x_and_tree()
        baselines = jax.random.normal(jax.random.key(1), (3, 5), jnp.float64)
        got = jax.jit(
            lambda x: expected_gradients(
                KEY,
                lambda z: net(p, z),
                x,
                baselines,
                num_samples=5,
                targets=TARGETS,
                chunk_size=chunk_size,
            )
        )(x)
        want = loop(
            lambda f: expected_gradients(KEY, f, x, baselines, num_samples=5), p, net, TARGETS
        )
        assert_trees_close(got, want)


@pytest.mark.parametrize("chunk_size", [None, 3])
def test_layer_integrated_gradients_targets_equal_the_loop(chunk_size):
    with jax.enable_x64(True):
        p, (x, _) = params(), x_and_tree()
        body = lambda z: jnp.tanh(z @ p[0])  # noqa: E731
        result = layer_integrated_gradients(
            body,
            lambda h: h @ p[1],
            x,
            steps=6,
            targets=TARGETS,
            chunk_size=chunk_size,
            return_gap=True,
        )
        want = jnp.stack(
            [
                layer_integrated_gradients(body, lambda h, t=int(t): (h @ p[1])[t], x, steps=6)
                for t in TARGETS
            ]
        )
        assert_trees_close(result.attributions, want)
        change = (body(x) @ p[1] - body(0 * x) @ p[1])[TARGETS]
        np.testing.assert_allclose(result.completeness_gap, want.sum(1) - change, atol=1e-12)


X3 = jnp.ones(3)
VEC = lambda z: jnp.stack([z.sum(), (z**2).sum()])  # noqa: E731
BAD = [
    (
        lambda: integrated_gradients(VEC, X3, targets=jnp.array([0.0, 1.0])),
        TypeError,
        "targets must be an integer array",
    ),
    (
        lambda: integrated_gradients(VEC, X3, targets=jnp.array([True])),
        TypeError,
        "targets must be an integer array",
    ),
    (
        lambda: integrated_gradients(VEC, X3, targets=jnp.array([0, 2])),
        ValueError,
        "targets must be indices in [0, 2)",
    ),
    (
        lambda: integrated_gradients(VEC, X3, targets=jnp.array([-1])),
        ValueError,
        "targets must be indices in [0, 2)",
    ),
    (
        lambda: integrated_gradients(VEC, X3, targets=jnp.zeros((1, 1), int)),
        ValueError,
        "targets must be a non-empty 1-D array",
    ),
    (
        lambda: integrated_gradients(jnp.sum, X3, targets=jnp.array([0])),
        ValueError,
        "fun must return a vector of outputs",
    ),
    (
        lambda: integrated_gradients(VEC, X3, targets=[0], method="adaptive", steps=15),
        ValueError,
        "targets applies to the fixed rules",
    ),
    (
        lambda: smooth_grad(KEY, VEC, X3, stdev=0.1, targets=[3]),
        ValueError,
        "targets must be indices in [0, 2)",
    ),
    (
        lambda: expected_gradients(KEY, VEC, X3, jnp.ones((2, 3)), targets=[0.5]),
        TypeError,
        "targets must be an integer array",
    ),
    (
        lambda: layer_integrated_gradients(jnp.sin, VEC, X3, targets=[5]),
        ValueError,
        "targets must be indices in [0, 2)",
    ),
]


@pytest.mark.parametrize("call,error,words", BAD, ids=[w for _, _, w in BAD])
def test_bad_targets_name_the_argument(call, error, words):
    with pytest.raises(
        error, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        call()


def test_out_of_range_targets_are_caught_under_jit_when_closed_over():
    def closed_over(targets):
        return jax.jit(lambda x: integrated_gradients(VEC, x, targets=targets))

    for targets in (jnp.array([2]), np.array([2]), [2]):
        with pytest.raises(ValueError, match="targets must be indices"):
            closed_over(targets)(X3)
