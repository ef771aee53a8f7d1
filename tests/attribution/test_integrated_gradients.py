"""Integrated gradients: quadrature, completeness, equivalences, Captum, token scores."""

import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _compile import subprocess_env
from _nets import small_net, torch_twin

from gradjax import attribution
from gradjax.attribution import integrated_gradients, quadrature, render_html, token_scores

METHODS = attribution.METHODS


def net_params(d=5, h=7, dtype=jnp.float64):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    return (
        jax.random.normal(k1, (d, h), dtype),
        0.1 * jax.random.normal(k2, (h,), dtype),
        jax.random.normal(k3, (h,), dtype),
    )


def jitted_ig(fn, x, baseline=None, **options):
    """``integrated_gradients`` under ``jax.jit`` (one compilation instead of op-by-op
    dispatch; ``jit == eager`` is tested separately)."""
    return jax.jit(lambda x, b: integrated_gradients(fn, x, b, **options))(x, baseline)


def completeness_gap(fn, x, baseline, **kwargs):
    ig = jitted_ig(fn, x, baseline, **kwargs)
    return float(jnp.sum(ig) - (fn(x) - fn(baseline)))


# ----------------------------------------------------------------------------- quadrature


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("steps", [2, 3, 8])
def test_linear_model_is_exact_for_every_rule(method, steps):
    with jax.enable_x64(True):
        w = jnp.array([1.5, -2.0, 0.25, 3.0])
        x = jnp.array([0.3, -1.0, 2.0, 0.7])
        baseline = jnp.array([0.1, 0.2, -0.4, 1.0])
        ig = jitted_ig(lambda z: z @ w + 0.5, x, baseline, steps=steps, method=method)
        np.testing.assert_allclose(ig, w * (x - baseline), rtol=1e-13, atol=1e-14)


def test_single_step_rules_are_exact_on_linear_models():
    with jax.enable_x64(True):
        w, x = jnp.array([2.0, -1.0]), jnp.array([0.5, 3.0])
        for method in ("left", "right", "midpoint", "gauss_legendre"):
            ig = jitted_ig(lambda z: z @ w, x, steps=1, method=method)
            np.testing.assert_allclose(ig, w * x, rtol=1e-14)


def test_rules_match_hand_computed_sums():
    # f(x) = Σ x³/3, baseline 0: ∇f(αx) = α²x², so IG = x³ · Σₖ wₖ αₖ².
    expected = {
        ("left", 4): (0 + 1 + 4 + 9) / 64,
        ("right", 4): (1 + 4 + 9 + 16) / 64,
        ("midpoint", 4): (0.25 + 2.25 + 6.25 + 12.25) / 64,
        ("trapezoid", 5): 0.25 * (0 / 2 + 1 / 16 + 4 / 16 + 9 / 16 + 1 / 2),
        ("gauss_legendre", 2): 1 / 3,  # exact: ∫ α² dα
    }
    with jax.enable_x64(True):
        x = jnp.array([1.0, -2.0, 0.5])
        for (method, steps), factor in expected.items():
            ig = jitted_ig(lambda z: jnp.sum(z**3) / 3, x, steps=steps, method=method)
            np.testing.assert_allclose(ig, x**3 * factor, rtol=1e-14, err_msg=method)


def test_quadrature_nodes_and_weights():
    nodes, weights = quadrature("trapezoid", 5)
    np.testing.assert_allclose(nodes, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])
    np.testing.assert_allclose(quadrature("left", 4)[0], [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(quadrature("right", 4)[0], [0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(quadrature("midpoint", 2)[0], [0.25, 0.75])
    nodes, weights = quadrature("gauss_legendre", 2)
    np.testing.assert_allclose(nodes, [0.5 - 0.5 / np.sqrt(3), 0.5 + 0.5 / np.sqrt(3)])
    np.testing.assert_allclose(weights, [0.5, 0.5])
    for method in METHODS:
        assert abs(quadrature(method, 9)[1].sum() - 1) < 1e-14


@pytest.mark.parametrize("steps", [1, 2, 4, 7])
def test_gauss_legendre_is_exact_for_polynomials(steps):
    # f(x) = (a·x)^p: IGᵢ = aᵢ(xᵢ - x̄ᵢ)·[(a·x)^p - (a·x̄)^p]/(a·(x - x̄)) in closed form.
    # The path integrand has degree p - 1, so n Gauss nodes are exact up to p = 2n.
    with jax.enable_x64(True):
        a = jnp.array([0.7, -0.4, 0.9])
        x, baseline = jnp.array([1.1, 0.3, 0.8]), jnp.array([-0.2, 0.5, 0.1])

        def closed_form(p):
            d = x - baseline
            return a * d * ((a @ x) ** p - (a @ baseline) ** p) / (a @ d)

        for p, exact in ((2 * steps, True), (2 * steps + 1, False)):
            ig = jitted_ig(
                lambda z, p=p: (z @ a) ** p, x, baseline, steps=steps, method="gauss_legendre"
            )
            error = float(jnp.max(jnp.abs(ig - closed_form(p))))
            if exact:
                assert error < 1e-13, error
            else:
                assert error > 1e-6, error  # degree 2n + 1 is beyond the rule


@pytest.mark.parametrize(
    "method,order", [("left", 1), ("right", 1), ("midpoint", 2), ("trapezoid", 2)]
)
def test_completeness_error_order(method, order):
    with jax.enable_x64(True):
        params = net_params()
        fn = lambda z: small_net(params, z)  # noqa: E731
        x = jnp.linspace(-1.0, 1.5, 5)
        baseline = jnp.zeros(5)
        # Halve the node spacing: n -> 2n (the trapezoid's spacing is 1/(n - 1)).
        coarse, fine = (17, 33) if method == "trapezoid" else (16, 32)
        e1 = abs(completeness_gap(fn, x, baseline, steps=coarse, method=method))
        e2 = abs(completeness_gap(fn, x, baseline, steps=fine, method=method))
        assert e1 > 1e-8
        np.testing.assert_allclose(e1 / e2, 2.0**order, rtol=0.1)


def test_gauss_legendre_completeness_is_tight_and_converges():
    with jax.enable_x64(True):
        params = net_params()
        fn = lambda z: small_net(params, z)  # noqa: E731
        x = jnp.linspace(-1.0, 1.5, 5)
        gaps = [
            abs(completeness_gap(fn, x, jnp.zeros(5), steps=n, method="gauss_legendre"))
            for n in (2, 4, 8, 16)
        ]
        # Spectral convergence: each doubling of n gains more than the last.
        assert gaps[1] < gaps[0] / 50 and gaps[2] < gaps[1] / 500 and gaps[3] < gaps[2] / 1e5
        result = jitted_ig(fn, x, steps=16, method="gauss_legendre", return_gap=True)
        assert abs(float(result.completeness_gap)) < 1e-11
        assert bool(result.is_finite)


def test_saturation_and_baseline_equal_to_input():
    f = lambda z: jnp.minimum(1.0, z)  # noqa: E731
    x = jnp.asarray(2.0)
    assert float(jax.grad(f)(x)) == 0.0  # the plain gradient sees nothing
    for method, steps in (("trapezoid", 51), ("midpoint", 20), ("gauss_legendre", 20)):
        ig = jitted_ig(f, x, steps=steps, method=method)
        np.testing.assert_allclose(ig, 1.0, rtol=1e-6, err_msg=method)
    params = net_params(dtype=jnp.float32)
    x = jnp.linspace(-1.0, 1.0, 5)
    for method in METHODS:
        ig = jitted_ig(lambda z: small_net(params, z), x, x, steps=8, method=method)
        np.testing.assert_array_equal(ig, jnp.zeros(5))


def test_non_finite_is_reported():
    result = integrated_gradients(lambda z: jnp.sum(jnp.sqrt(z)), jnp.ones(3), return_gap=True)
    assert not bool(result.is_finite)  # ∇√z is infinite at the zero baseline


# ----------------------------------------------------------------------------- equivalences


@pytest.mark.parametrize("method", ["trapezoid", "gauss_legendre"])
def test_chunking_never_changes_the_result(method):
    with jax.enable_x64(True):
        params = net_params()
        fn = lambda z: small_net(params, z)  # noqa: E731
        x = jnp.linspace(-1.0, 1.5, 5)
        full = jitted_ig(fn, x, steps=23, method=method)
        for chunk_size in (1, 4, 5, 22, 23, 100):
            chunked = jitted_ig(fn, x, steps=23, method=method, chunk_size=chunk_size)
            np.testing.assert_allclose(chunked, full, rtol=1e-13, atol=1e-15)


def test_vmap_equals_loop_and_jit_equals_eager():
    params = net_params(dtype=jnp.float32)
    xs = jax.random.normal(jax.random.key(3), (4, 5))

    def attribute(x):
        return integrated_gradients(
            lambda z: small_net(params, z), x, steps=12, method="gauss_legendre", chunk_size=5
        )

    single = jax.jit(attribute)
    loop = jnp.stack([single(x) for x in xs])
    np.testing.assert_allclose(jax.jit(jax.vmap(attribute))(xs), loop, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attribute(xs[0]), loop[0], rtol=1e-5, atol=1e-6)  # eager


def test_no_retrace_on_second_call():
    @chex.assert_max_traces(n=1)
    def attribute(x):
        fn = lambda z: jnp.sum(jnp.sin(z))  # noqa: E731
        return integrated_gradients(fn, x, steps=8, method="gauss_legendre", chunk_size=3)

    attribute = jax.jit(attribute)
    first = attribute(jnp.ones(4))
    second = attribute(2 * jnp.ones(4))  # a second trace would raise
    np.testing.assert_allclose(first, jnp.sin(1.0) * jnp.ones(4), rtol=1e-5)
    np.testing.assert_allclose(second, jnp.sin(2.0) * jnp.ones(4), rtol=1e-5)


def test_pytree_inputs_match_the_flattened_input():
    with jax.enable_x64(True):
        params = net_params(d=6)

        def tree_fn(t):
            return small_net(params, jnp.concatenate([t["a"], t["b"].ravel()]))

        x = {"a": jnp.array([0.5, -1.0]), "b": jnp.array([[0.2, 0.3], [1.0, -0.7]])}
        baseline = {"a": jnp.array([0.1, 0.1]), "b": 0.05}
        ig = jitted_ig(tree_fn, x, baseline, steps=10, method="gauss_legendre")
        flat = jitted_ig(
            lambda z: small_net(params, z),
            jnp.concatenate([x["a"], x["b"].ravel()]),
            jnp.concatenate([baseline["a"], jnp.full(4, 0.05)]),
            steps=10,
            method="gauss_legendre",
        )
        assert ig["b"].shape == (2, 2)
        np.testing.assert_allclose(
            jnp.concatenate([ig["a"], ig["b"].ravel()]), flat, rtol=1e-12, atol=1e-15
        )


def test_gradient_through_attributions():
    # The attributions are differentiable in the model parameters (e.g. for
    # attribution priors); for a linear model d/dw Σ IG = x - x̄.
    x, baseline = jnp.array([1.0, 2.0]), jnp.array([0.5, -1.0])
    grad = jax.grad(lambda w: jnp.sum(integrated_gradients(lambda z: z @ w, x, baseline)))(
        jnp.ones(2)
    )
    np.testing.assert_allclose(grad, x - baseline, rtol=1e-6)


SHARDED = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from gradjax.attribution import integrated_gradients
    assert jax.device_count() == 8
    w = jax.random.normal(jax.random.key(0), (6, 4))
    fn = lambda z: jnp.sum(jnp.tanh(z @ w) ** 2)
    xs = jax.random.normal(jax.random.key(1), (16, 6))
    attribute = jax.jit(jax.vmap(
        lambda x: integrated_gradients(fn, x, steps=16, method="gauss_legendre", chunk_size=6)))
    single = attribute(xs)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = attribute(jax.device_put(xs, NamedSharding(mesh, P("data"))))
    assert len(sharded.sharding.device_set) == 8, sharded.sharding
    np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-6)
    print("ok")
    """
)


def test_sharded_batch_matches_single_device():
    env = subprocess_env(8)
    out = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


# ----------------------------------------------------------------------------- Captum


CAPTUM_METHODS = {
    "left": "riemann_left",
    "right": "riemann_right",
    "midpoint": "riemann_middle",
    "gauss_legendre": "gausslegendre",
}


def test_agrees_with_captum():
    captum_attr = pytest.importorskip("captum.attr")
    with jax.enable_x64(True):
        params = net_params()
        torch, net = torch_twin(params)
        xs = jax.random.normal(jax.random.key(5), (3, 5), jnp.float64)
        baselines = 0.1 * jax.random.normal(jax.random.key(6), (3, 5), jnp.float64)
        ig = captum_attr.IntegratedGradients(net)
        for ours, theirs in CAPTUM_METHODS.items():
            expected = ig.attribute(
                torch.from_numpy(np.array(xs)),
                baselines=torch.from_numpy(np.array(baselines)),
                target=0,
                n_steps=9,
                method=theirs,
            ).numpy()
            got = jax.vmap(
                lambda x, b, ours=ours: jitted_ig(
                    lambda z: small_net(params, z), x, b, steps=9, method=ours
                )
            )(xs, baselines)
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9, err_msg=ours)
        # Captum's trapezoid uses weights 1/n (halved at the ends) on the nodes
        # k/(n - 1): they sum to (n - 1)/n, so its result is ours scaled by that.
        n = 9
        theirs = ig.attribute(
            torch.from_numpy(np.array(xs)),
            baselines=torch.from_numpy(np.array(baselines)),
            target=0,
            n_steps=n,
            method="riemann_trapezoid",
        ).numpy()
        got = jax.vmap(lambda x, b: jitted_ig(lambda z: small_net(params, z), x, b, steps=n))(
            xs, baselines
        )
        np.testing.assert_allclose(theirs, got * (n - 1) / n, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------------------- tokens


def test_token_score_reductions():
    a = jnp.array([[3.0, -4.0], [1.0, 1.0], [0.0, -0.5]])
    np.testing.assert_allclose(token_scores(a), [-1.0, 2.0, -0.5])
    np.testing.assert_allclose(token_scores(a, reduce="l2"), [5.0, np.sqrt(2), 0.5])
    np.testing.assert_allclose(token_scores(a, reduce="max_abs"), [4.0, 1.0, 0.5])
    np.testing.assert_allclose(token_scores(a, normalize=True), [0.0, 1.0, 1 / 6])
    for reduce in attribution.REDUCTIONS:
        s = token_scores(a, reduce=reduce, normalize=True)
        assert float(s.min()) == 0.0 and float(s.max()) == 1.0


def test_token_scores_constant_rows_and_mask():
    # Rows of equal entries: ‖a‖₂ = √E·max|a|, so the normalised scores agree.
    a = jnp.array([[2.0] * 4, [-1.0] * 4, [0.5] * 4])
    l2 = token_scores(a, reduce="l2", normalize=True)
    np.testing.assert_allclose(l2, token_scores(a, reduce="max_abs", normalize=True), rtol=1e-6)
    np.testing.assert_allclose(token_scores(jnp.ones((3, 2)), normalize=True), jnp.zeros(3))
    batch = jnp.stack([a, 10 * a])
    mask = jnp.array([[True, True, False], [True, False, True]])
    s = token_scores(batch, reduce="l2", normalize=True, mask=mask)
    np.testing.assert_allclose(s, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


def test_token_scores_let_nan_through_the_normalisation():
    """A NaN attribution (a NaN gradient) makes its sequence NaN; ``span > 0`` would have
    read the NaN span as a constant row and returned zeros."""
    a = jnp.array([[[1.0, jnp.nan], [2.0, 3.0]], [[1.0, 0.0], [2.0, 3.0]]])
    for fn in (token_scores, jax.jit(token_scores, static_argnames="normalize")):
        s = fn(a, normalize=True)
        assert bool(jnp.all(jnp.isnan(s[0])))
        np.testing.assert_allclose(s[1], [0.0, 1.0])
    masked = token_scores(a, normalize=True, mask=jnp.array([[False, True], [True, True]]))
    np.testing.assert_allclose(masked, [[0.0, 0.0], [0.0, 1.0]])  # a masked NaN is padding


def test_token_attributions_formulas():
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.key(7))
        w = jax.random.normal(k1, (4, 3))
        fn = lambda e: jnp.sum(jnp.tanh(e * w))  # noqa: E731
        emb = jax.random.normal(k2, (4, 3))
        scores = jax.jit(
            lambda e: attribution.token_attributions(fn, e, steps=16, method="gauss_legendre")
        )(emb)
        np.testing.assert_allclose(jnp.sum(scores), fn(emb) - fn(jnp.zeros_like(emb)), rtol=1e-12)
        # The reference's variant: Σₖ wₖ (αₖ e) ⊙ ∇F(αₖ e), here by an explicit loop.
        nodes, weights = quadrature("trapezoid", 20)
        variant = sum(
            wk * (ak * emb) * jax.grad(fn)(ak * emb) for ak, wk in zip(nodes, weights, strict=True)
        )
        got = jax.jit(
            lambda e: attribution.token_attributions(
                fn, e, steps=20, formula="alpha_scaled", reduce="l2", chunk_size=6
            )
        )(emb)
        np.testing.assert_allclose(got, jnp.linalg.norm(variant, axis=-1), rtol=1e-12)


def test_render_html_escapes_and_shades():
    out = render_html(["<b>", "a&b", "x"], [1.0, 0.5, -0.25])
    assert "<b>" not in out and "&lt;b&gt;" in out and "a&amp;b" in out
    assert "rgba(255, 0, 0, 0.850)" in out and "rgba(255, 0, 0, 0.425)" in out
    assert "rgba(0, 90, 255, 0.212)" in out  # negative scores are blue
    assert out.count("<span") == 3


def test_heatmap_overlay():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = attribution.heatmap_overlay(np.ones((8, 8)), np.linspace(-1, 2, 64).reshape(8, 8))
    assert ax.images[-1].get_clim() == (-2.0, 2.0)
    plt.close(ax.figure)


# ----------------------------------------------------------------------------- bad input


F = lambda z: jnp.sum(z)  # noqa: E731
X3 = jnp.ones(3)
BAD = [
    (lambda: integrated_gradients(F, X3, method="simpson"), ValueError, "method must be one of"),
    (lambda: integrated_gradients(F, X3, steps=0), ValueError, "steps"),
    (lambda: integrated_gradients(F, X3, steps=1, method="trapezoid"), ValueError, "steps"),
    (lambda: integrated_gradients(F, X3, steps=2.5), TypeError, "steps must be an int"),
    (lambda: integrated_gradients(F, X3, steps=jnp.int32(1)), ValueError, "steps must be >= 2"),
    (lambda: integrated_gradients(F, X3, jnp.ones(4)), ValueError, "baseline"),
    (lambda: integrated_gradients(lambda t: t["a"].sum(), {"a": X3}, {"b": X3}), ValueError,
     "baseline"),
    (lambda: integrated_gradients(F, X3, chunk_size=0), ValueError, "chunk_size"),
    (lambda: integrated_gradients(lambda z: z * 2, X3), ValueError, "fun must return a scalar"),
    (lambda: integrated_gradients("f", X3), TypeError, "fun must be callable"),
    (lambda: integrated_gradients(F, jnp.ones(3, jnp.int32)), TypeError, "x must"),
    (lambda: integrated_gradients(F, jnp.array([1.0, jnp.nan, 0.0])), ValueError,
     "x must be finite"),
    (lambda: integrated_gradients(F, {}), ValueError, "x must contain at least one array"),
    (lambda: integrated_gradients(F, X3, return_gap=1), TypeError, "return_gap must be a bool"),
    (lambda: quadrature("simpson", 4), ValueError, "method must be one of"),
    (lambda: quadrature("left", 0), ValueError, "steps must be >= 1"),
    (lambda: quadrature("left", "4"), TypeError, "steps must be an int"),
    (lambda: token_scores(jnp.ones((3, 2)), reduce="mean"), ValueError, "reduce"),
    (lambda: token_scores(jnp.ones(3)), ValueError, "attributions"),
    (lambda: token_scores(jnp.ones((3, 2), int)), TypeError, "attributions must be floating"),
    (lambda: token_scores(jnp.ones((3, 2)), mask=jnp.ones(2, bool)), ValueError, "mask"),
    (lambda: token_scores(jnp.ones((3, 2)), normalize="yes"), TypeError,
     "normalize must be a bool"),
    (lambda: attribution.token_attributions(F, jnp.ones((3, 2)), formula="grad_x_input"),
     ValueError, "formula"),
    (lambda: attribution.token_attributions(F, jnp.ones(3)), ValueError, "embeddings"),
    (lambda: attribution.token_attributions(F, jnp.full((3, 2), jnp.inf)), ValueError,
     "embeddings must be finite"),
    (lambda: attribution.token_attributions(F, jnp.ones((3, 2)), jnp.ones(2)), ValueError,
     "baseline"),
    (lambda: render_html(["a", "b"], [1.0]), ValueError, "scores must have shape"),
    (lambda: render_html(["a"], [float("nan")]), ValueError, "scores must be finite"),
    (lambda: render_html([1, 2], [1.0, 2.0]), TypeError, "tokens must be strings"),
    (lambda: render_html(["a"], [1.0], max_opacity=0.0), ValueError, "max_opacity"),
    (lambda: render_html(["a"], [1.0], max_opacity="1"), TypeError, "max_opacity"),
    (lambda: attribution.heatmap_overlay(np.ones((8, 8)), np.ones((4, 4))), ValueError,
     "attributions must have shape"),
    (lambda: attribution.heatmap_overlay(np.ones(8), np.ones(8)), ValueError, "image"),
    (lambda: attribution.heatmap_overlay(np.ones((8, 8)), np.ones((8, 8)), alpha=2.0),
     ValueError, "alpha"),
    (lambda: attribution.heatmap_overlay(np.ones((8, 8)), np.ones((8, 8)), colorbar=1),
     TypeError, "colorbar must be a bool"),
]  # fmt: skip


@pytest.mark.parametrize("call,error,words", BAD, ids=[w for _, _, w in BAD])
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(error, match=words):
        call()
