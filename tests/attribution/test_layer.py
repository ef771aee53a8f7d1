"""Layer attributions: the closed form where the two paths differ, completeness, IG, Captum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax.attribution import (
    integrated_gradients,
    layer_conductance,
    layer_integrated_gradients,
)

LAYER_FNS = (layer_integrated_gradients, layer_conductance)
RNG = np.random.default_rng(1)
W1, B1 = RNG.normal(size=(5, 7)), 0.1 * RNG.normal(size=7)
W2, W3 = RNG.normal(size=(7, 4)) / 2, RNG.normal(size=4)
X, BASELINE = RNG.normal(size=5), 0.1 * RNG.normal(size=5)


def body(x):
    return jnp.tanh(x @ W1 + B1)


def head(h):
    """Couples the units (a head that is a sum of per-unit terms gives both layer
    attributions exactly headⱼ(hⱼ) - headⱼ(h̄ⱼ), so they would agree)."""
    return jnp.tanh(h @ W2) @ W3


def test_closed_form_where_layer_space_and_input_path_differ():
    # body(x) = (x, x²), head = h₁h₂, from 0 to 1. Layer space: h(α) = (α, α), so both
    # shares are ∫α dα = ½. Input path: h = (α, α²), ḣ = (1, 2α), ∇head = (α², α):
    # shares ∫α² = ⅓ and ∫2α² = ⅔. The integrands are quadratic: 2 Gauss nodes are exact.
    with jax.enable_x64(True):
        square = lambda x: (x, x**2)  # noqa: E731
        product = lambda h: h[0] * h[1]  # noqa: E731
        both = jax.jit(
            lambda x: [f(square, product, x, steps=2, return_gap=True) for f in LAYER_FNS]
        )
        lig, cond = both(jnp.asarray(1.0))
        np.testing.assert_allclose(lig.attributions, (0.5, 0.5), rtol=1e-14)
        np.testing.assert_allclose(cond.attributions, (1 / 3, 2 / 3), rtol=1e-14)
        for result in (lig, cond):
            assert abs(float(result.completeness_gap)) < 1e-15 and int(result.evaluations) == 2


def test_complete_and_identity_body_is_integrated_gradients():
    with jax.enable_x64(True):
        x, baseline = jnp.asarray(X), jnp.asarray(BASELINE)
        full = lambda z: head(body(z))  # noqa: E731

        @jax.jit
        def all_of_them(x, baseline):
            layer = [f(body, head, x, baseline, steps=24, return_gap=True) for f in LAYER_FNS]
            identity = [f(lambda z: z, full, x, baseline, steps=12) for f in LAYER_FNS]
            ig = integrated_gradients(full, x, baseline, steps=12, method="gauss_legendre")
            return layer, identity, ig

        layer, identity, ig = all_of_them(x, baseline)
        for result in layer:  # both complete to the quadrature error (smooth: spectral)
            assert abs(float(result.completeness_gap)) < 1e-12
            assert result.attributions.shape == (7,) and bool(result.is_finite)
        # The two paths differ on a nonlinear body.
        assert float(jnp.max(jnp.abs(layer[0].attributions - layer[1].attributions))) > 1e-3
        for got in identity:
            np.testing.assert_allclose(got, ig, rtol=1e-12, atol=1e-15)


def test_pytree_layers_chunking_and_vmap_over_inputs():
    with jax.enable_x64(True):
        two = lambda x: {"h": body(x), "skip": x[:2]}  # noqa: E731
        top = lambda t: head(t["h"]) + jnp.sum(t["skip"] ** 2)  # noqa: E731
        xs = jnp.asarray(RNG.normal(size=(3, 5)))

        @jax.jit
        def variants(xs):
            return [
                [
                    jax.vmap(lambda x, c=c, f=f: f(two, top, x, steps=9, chunk_size=c))(xs)
                    for c in (None, 4)
                ]
                + [f(two, top, xs[1], steps=9)]
                for f in LAYER_FNS
            ]

        for full, chunked, single in variants(xs):
            for key in ("h", "skip"):
                np.testing.assert_allclose(chunked[key], full[key], rtol=1e-12, atol=1e-15)
                np.testing.assert_allclose(single[key], full[key][1], rtol=1e-12, atol=1e-15)
            assert full["skip"].shape == (3, 2)


def test_layer_integrated_gradients_agree_with_captum():
    torch = pytest.importorskip("torch")
    captum_attr = pytest.importorskip("captum.attr")
    with jax.enable_x64(True):
        t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731

        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.body = torch.nn.Identity()

            def forward(self, x):
                h = self.body(torch.tanh(x @ t(W1) + t(B1)))
                return (torch.tanh(h @ t(W2)) @ t(W3))[:, None]

        net = Net()
        theirs = captum_attr.LayerIntegratedGradients(net, net.body).attribute(
            t(X)[None], baselines=t(BASELINE)[None], target=0, n_steps=9, method="gausslegendre"
        )
        ours = jax.jit(lambda x, b: layer_integrated_gradients(body, head, x, b, steps=9))(
            jnp.asarray(X), jnp.asarray(BASELINE)
        )
        # rtol: Captum builds its path coefficients as float32 tensors (Δα ~ 1e-8 relative).
        np.testing.assert_allclose(ours, theirs.detach().numpy()[0], rtol=1e-6)


F = lambda z: jnp.sum(z**2)  # noqa: E731
X3 = jnp.ones(3)
BAD = [
    (lambda f: f("body", F, X3), TypeError, "body must be callable"),
    (lambda f: f(jnp.sin, None, X3), TypeError, "head must be callable"),
    (lambda f: f(jnp.sin, lambda h: h, X3), ValueError, "head must return a scalar"),
    (lambda f: f(jnp.sin, F, X3, method="adaptive"), ValueError, "method must be one of"),
    (lambda f: f(jnp.sin, F, X3, steps=0), ValueError, "steps"),
    (lambda f: f(jnp.sin, F, X3, chunk_size=-1), ValueError, "chunk_size"),
    (lambda f: f(jnp.sin, F, X3, jnp.ones(2)), ValueError, "baseline must have the shape"),
    (lambda f: f(jnp.sin, F, X3, jnp.array([0.0, jnp.nan, 0.0])), ValueError, "baseline must be"),
    (lambda f: f(jnp.sin, F, jnp.ones(3, int)), TypeError, "x must be floating"),
    (lambda f: f(lambda x: jnp.round(x).astype(int), F, X3), TypeError, "body must return"),
    (lambda f: f(jnp.sin, F, X3, return_gap=1), TypeError, "return_gap must be a bool"),
]


@pytest.mark.parametrize("fn", LAYER_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("call,error,words", BAD, ids=[w for _, _, w in BAD])
def test_bad_input_names_the_argument(fn, call, error, words):
    with pytest.raises(error, match=words):
        call(fn)
