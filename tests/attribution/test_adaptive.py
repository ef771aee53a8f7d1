"""Adaptive integrated gradients: the Gauss–Kronrod pair, tolerance, budget, equivalences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax import Status
from gradjax.attribution import integrated_gradients
from gradjax.attribution._quadrature import gauss_kronrod_15

W = np.array([1.5, -2.0, 0.5, 1.0])
X = np.array([0.9, -0.3, 0.4, 0.6])  # w·x = 2.65
SHARPNESS, CENTRE = 30.0, 1.3  # the sigmoid's step sits at α ≈ 0.49 of the path


def sharp(z):
    return jax.nn.sigmoid(SHARPNESS * (z @ W - CENTRE))


def closed_form(x, baseline):
    """For f = g(w·x): IGᵢ = wᵢ(xᵢ - x̄ᵢ) (g(w·x) - g(w·x̄)) / (w·(x - x̄))."""
    g = lambda s: 1 / (1 + np.exp(-SHARPNESS * (s - CENTRE)))  # noqa: E731
    d = x - baseline
    return W * d * (g(W @ x) - g(W @ baseline)) / (W @ d)


@functools.cache
def compiled(steps, chunk_size=None):
    """One jitted adaptive IG of ``sharp`` per static option; ``tol`` is traced."""
    return jax.jit(
        lambda x, b, tol: integrated_gradients(
            sharp,
            x,
            b,
            method="adaptive",
            steps=steps,
            tol=tol,
            chunk_size=chunk_size,
            return_gap=True,
        )
    )


def adaptive(x, baseline=None, *, steps, tol, chunk_size=None):
    baseline = jnp.zeros_like(x) if baseline is None else baseline
    return compiled(steps, chunk_size)(x, baseline, tol)


def test_gauss_kronrod_pair_is_nested_and_exact_to_its_degree():
    nodes, kronrod, gauss = gauss_kronrod_15()
    gauss_nodes = (np.polynomial.legendre.leggauss(7)[0] + 1) / 2
    np.testing.assert_allclose(nodes[1::2], gauss_nodes, atol=1e-15)
    assert np.all(gauss[::2] == 0) and np.all(np.diff(nodes) > 0)
    t = 2 * nodes - 1  # ∫₀¹ (2α - 1)ᵖ dα = 1/(p + 1) for even p (odd p: 0 by symmetry)
    for p in range(0, 26, 2):  # Kronrod exact to degree 23, Gauss to degree 13
        assert (abs(kronrod @ t**p - 1 / (p + 1)) < 1e-14) == (p <= 23), p
        assert (abs(gauss @ t**p - 1 / (p + 1)) < 1e-14) == (p <= 13), p


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-10])
def test_meets_tol_on_a_sharp_sigmoid_where_fixed_rules_do_not(tol):
    with jax.enable_x64(True):
        x, baseline = jnp.asarray(X), jnp.zeros(4)
        result = adaptive(x, baseline, steps=615, tol=tol)
        change = float(sharp(x) - sharp(baseline))
        assert abs(float(result.completeness_gap)) <= tol * abs(change)
        used = int(result.evaluations)
        assert used <= 615 and (used - 15) % 30 == 0
        assert int(result.status) == Status.SUCCESS and bool(result.converged)
        # The attributions themselves, not only their sum, against the closed form.
        np.testing.assert_allclose(result.attributions, closed_form(X, 0 * X), atol=10 * tol)
        fixed = jax.jit(
            lambda x: [
                integrated_gradients(sharp, x, method=m, steps=16, return_gap=True)
                for m in ("trapezoid", "gauss_legendre")
            ]
        )(x)
        for result in fixed:
            assert abs(float(result.completeness_gap)) > 1e-3 * abs(change)


def test_stops_refining_as_soon_as_tol_is_met():
    with jax.enable_x64(True):
        x = jnp.asarray(X)
        used = int(adaptive(x, steps=615, tol=1e-6).evaluations)
        assert used > 15
        # One bisection fewer is short of the tolerance: the loop stopped at the first
        # refinement that met it, and a budget below that is spent whole.
        short = adaptive(x, steps=used - 1, tol=1e-6)
        assert int(short.evaluations) == used - 30
        assert abs(float(short.completeness_gap)) > 1e-6 * float(sharp(x) - sharp(0 * x))
        # The budget ran out before the tolerance: MAX_STEPS, not converged.
        assert int(short.status) == Status.MAX_STEPS and not bool(short.converged)
        # A polynomial of degree <= 23 along the path: the first Kronrod panel is exact.
        cubic = jax.jit(
            lambda x: integrated_gradients(
                lambda z: (z @ W) ** 3, x, method="adaptive", steps=615, tol=1e-12, return_gap=True
            )
        )(x)
        assert int(cubic.evaluations) == 15


def test_vmap_over_inputs_equals_the_loop_with_each_input_its_own_refinement():
    with jax.enable_x64(True):
        xs = jnp.stack([jnp.asarray(X), 0.2 * jnp.asarray(X), jnp.asarray(X)[::-1]])
        batched = jax.jit(
            jax.vmap(
                lambda x: integrated_gradients(
                    sharp, x, method="adaptive", steps=615, tol=1e-8, return_gap=True
                )
            )
        )(xs)
        loop = [adaptive(x, steps=615, tol=1e-8) for x in xs]
        for i, single in enumerate(loop):
            np.testing.assert_allclose(batched.attributions[i], single.attributions, rtol=1e-12)
            assert int(batched.evaluations[i]) == int(single.evaluations)
        # The input near the baseline stays below the step: 15 evaluations suffice there.
        assert int(batched.evaluations[1]) == 15 < int(batched.evaluations[0])


def test_chunking_never_changes_the_result():
    with jax.enable_x64(True):
        x = jnp.asarray(X)
        full = adaptive(x, steps=615, tol=1e-8)
        for chunk_size in (4,):
            chunked = adaptive(x, steps=615, tol=1e-8, chunk_size=chunk_size)
            np.testing.assert_allclose(chunked.attributions, full.attributions, rtol=1e-13)
            assert int(chunked.evaluations) == int(full.evaluations)


def test_pytree_input_and_a_non_finite_gradient_stop_the_loop():
    def run(x, fn):
        return jax.jit(
            lambda x: integrated_gradients(fn, x, method="adaptive", steps=300, return_gap=True)
        )(x)

    with jax.enable_x64(True):
        tree = {"a": jnp.asarray(X[:2]), "b": jnp.asarray(X[2:])}
        got = run(tree, lambda t: sharp(jnp.concatenate([t["a"], t["b"]]))).attributions
        np.testing.assert_allclose(
            jnp.concatenate([got["a"], got["b"]]), closed_form(X, 0 * X), atol=1e-3
        )
    # log(z - 1/2) is NaN below α = 1/2: reported, and the loop stops at once.
    result = run(jnp.ones(3), lambda z: jnp.sum(jnp.log(z - 0.5)))
    assert not bool(result.is_finite) and int(result.evaluations) == 15
    assert int(result.status) == Status.NONFINITE and not bool(result.converged)


ONES = jnp.ones(3)
BAD = [
    (dict(method="adaptive", steps=14), ValueError, "steps must be >= 15"),
    (dict(method="adaptive", steps=30.0), TypeError, "steps must be an int"),
    (dict(method="adaptive", tol=0.0), ValueError, "tol must be finite and > 0"),
    (dict(method="adaptive", tol=np.float64("inf")), ValueError, "tol must be finite"),
    (dict(method="adaptive", tol="1e-3"), TypeError, "tol must be a real scalar"),
    (dict(method="adaptive", chunk_size=0), ValueError, "chunk_size"),
    (dict(method="gauss_legendre", tol=1e-3), ValueError, "tol applies to method='adaptive'"),
    (dict(method="kronrod"), ValueError, "'adaptive'"),
    (dict(method="adaptive", return_gap="yes"), TypeError, "return_gap must be a bool"),
]


@pytest.mark.parametrize("options,error,words", BAD, ids=[w for _, _, w in BAD])
def test_bad_input_names_the_argument(options, error, words):
    with pytest.raises(error, match=words):
        integrated_gradients(lambda z: jnp.sum(z**2), ONES, **options)
