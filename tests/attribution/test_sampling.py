"""SmoothGrad and expected gradients: closed forms, the documented draws, Captum, equivalences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _nets import small_net, torch_twin

from gradjax.attribution import expected_gradients, smooth_grad

KEY = jax.random.key(3)


RNG = np.random.default_rng(0)
PARAMS = (RNG.normal(size=(4, 6)), 0.1 * RNG.normal(size=6), RNG.normal(size=6))
BASELINES = RNG.normal(size=(5, 4))


def net_params():
    return tuple(jnp.asarray(p) for p in PARAMS)


@jax.jit(static_argnums=(1, 2))
def drawn_noise(stdev, n, shape):
    """SmoothGrad's documented draw for a single-leaf float64 input and KEY."""
    (k,) = jax.random.split(KEY, 1)
    return stdev * jax.random.normal(k, (n, *shape), jnp.float64)


@jax.jit(static_argnums=(0, 1))
def drawn_baselines(size, n):
    """Expected gradients' documented draws for KEY: (baseline rows, α)."""
    k_rows, k_alpha = jax.random.split(KEY)
    rows = jax.random.randint(k_rows, (n,), 0, size)
    return rows, jax.random.uniform(k_alpha, (n,), jnp.float64)


def test_smooth_grad_linear_is_w_for_any_noise_and_tiny_noise_is_the_gradient():
    with jax.enable_x64(True):
        w, x = jnp.array([1.5, -2.0, 0.25, 3.0]), jnp.array([0.3, -1.0, 2.0, 0.7])
        linear = jax.jit(
            lambda s: (
                smooth_grad(KEY, lambda z: z @ w + 1.0, x, stdev=s, num_samples=7),
                smooth_grad(KEY, lambda z: z @ w, x, stdev=s, num_samples=7, squared=True),
            )
        )
        for stdev in (0.0, 0.1, 10.0):
            plain, squared = linear(stdev)
            np.testing.assert_allclose(plain, w, rtol=1e-14)
            np.testing.assert_allclose(squared, w**2, rtol=1e-14)
        params = net_params()
        fn = lambda z: small_net(params, z)  # noqa: E731
        grad = jax.grad(fn)(x)
        plain, squared = jax.jit(
            lambda x: [
                smooth_grad(KEY, fn, x, stdev=1e-7, num_samples=8, squared=s) for s in (False, True)
            ]
        )(x)
        np.testing.assert_allclose(plain, grad, rtol=1e-5)  # the error is O(σ ‖∇²f‖ / ‖∇f‖)
        np.testing.assert_allclose(squared, grad**2, rtol=1e-5)


def test_smooth_grad_is_the_mean_over_the_documented_draws_and_chunks_change_nothing():
    with jax.enable_x64(True):
        params = net_params()
        fn = lambda z: small_net(params, z)  # noqa: E731
        x = jnp.array([0.3, -1.0, 2.0, 0.7])
        grads = jax.jit(jax.vmap(jax.grad(fn)))(x + drawn_noise(0.4, 11, (4,)))

        options = [(s, c) for s in (False, True) for c in (None, 1, 3)]

        @jax.jit
        def variants(x):
            return [
                smooth_grad(KEY, fn, x, stdev=0.4, num_samples=11, squared=s, chunk_size=c)
                for s, c in options
            ]

        for (squared, chunk_size), got in zip(options, variants(x), strict=True):
            expected = (grads**2 if squared else grads).mean(0)
            np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=f"{chunk_size}")


def test_expected_gradients_linear_is_w_times_x_minus_the_drawn_baseline_mean():
    with jax.enable_x64(True):
        w = jnp.array([1.5, -2.0, 0.25])
        x = jnp.array([0.3, -1.0, 2.0])
        baselines = jnp.asarray(BASELINES[:, :3])
        rows, _ = drawn_baselines(5, 9)
        got = jax.jit(
            lambda x: expected_gradients(KEY, lambda z: z @ w, x, baselines, num_samples=9)
        )(x)
        np.testing.assert_allclose(got, w * (x - baselines[rows].mean(0)), rtol=1e-13)


def test_expected_gradients_documented_draws_chunks_and_vmap():
    with jax.enable_x64(True):
        params = net_params()
        fn = lambda z: small_net(params, z)  # noqa: E731
        xs = jnp.asarray(RNG.normal(size=(3, 4)))
        baselines = jnp.asarray(BASELINES)
        rows, alphas = drawn_baselines(5, 10)

        def explicit(x):
            b = baselines[rows]
            return jnp.mean((x - b) * jax.vmap(jax.grad(fn))(b + alphas[:, None] * (x - b)), 0)

        @jax.jit
        def variants(xs):
            return [
                jax.vmap(
                    lambda x, c=c: expected_gradients(
                        KEY, fn, x, baselines, num_samples=10, chunk_size=c
                    )
                )(xs)
                for c in (None, 3)
            ]

        expected = jax.jit(jax.vmap(explicit))(xs)
        for got in variants(xs):
            np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_smooth_grad_vmap_over_inputs_and_pytrees():
    with jax.enable_x64(True):
        params = net_params()
        xs = jnp.asarray(RNG.normal(size=(3, 4)))
        fn = lambda z: small_net(params, z)  # noqa: E731
        one = lambda x: smooth_grad(KEY, fn, x, stdev=0.3, num_samples=6)  # noqa: E731
        two = lambda t: smooth_grad(  # noqa: E731
            KEY, lambda t: fn(jnp.concatenate([t[0], t[1]])), t, stdev=0.3, num_samples=6
        )
        batched, loop, tree = jax.jit(
            lambda xs: (jax.vmap(one)(xs), [one(x) for x in xs], two((xs[0, :1], xs[0, 1:])))
        )(xs)
        np.testing.assert_allclose(batched, jnp.stack(loop), rtol=1e-13)
        assert tree[0].shape == (1,) and tree[1].shape == (3,)


# ----------------------------------------------------------------------------- Captum


def test_smooth_grad_agrees_with_captum_noise_tunnel_on_the_same_draws(monkeypatch):
    captum_attr = pytest.importorskip("captum.attr")
    with jax.enable_x64(True):
        params = net_params()
        torch, net = torch_twin(params)
        x = jnp.array([0.3, -1.0, 2.0, 0.7])
        eps = drawn_noise(0.5, 12, (4,))
        monkeypatch.setattr(torch, "normal", lambda mean, std: torch.from_numpy(np.array(eps)))
        tunnel = captum_attr.NoiseTunnel(captum_attr.Saliency(net))
        for squared, nt_type in ((False, "smoothgrad"), (True, "smoothgrad_sq")):
            theirs = tunnel.attribute(
                torch.from_numpy(np.array(x))[None],
                nt_type=nt_type,
                nt_samples=12,
                stdevs=0.5,
                target=0,
                abs=False,
            )
            ours = jax.jit(
                lambda x, s=squared: smooth_grad(
                    KEY, lambda z: small_net(params, z), x, stdev=0.5, num_samples=12, squared=s
                )
            )(x)
            np.testing.assert_allclose(ours, theirs.detach().numpy()[0], rtol=1e-12)


def test_expected_gradients_agree_with_captum_gradient_shap_without_noise(monkeypatch):
    captum_attr = pytest.importorskip("captum.attr")
    with jax.enable_x64(True):
        params = net_params()
        torch, net = torch_twin(params)
        x = jnp.array([0.3, -1.0, 2.0, 0.7])
        baselines = jnp.asarray(BASELINES)
        rows, alphas = drawn_baselines(5, 16)
        monkeypatch.setattr(np.random, "choice", lambda *args, **kw: np.asarray(rows))
        monkeypatch.setattr(np.random, "uniform", lambda *args, **kw: np.asarray(alphas))
        theirs = captum_attr.GradientShap(net).attribute(
            torch.from_numpy(np.array(x))[None],
            baselines=torch.from_numpy(np.array(baselines)),
            n_samples=16,
            stdevs=0.0,
            target=0,
        )
        ours = expected_gradients(KEY, lambda z: small_net(params, z), x, baselines, num_samples=16)
        np.testing.assert_allclose(ours, theirs.detach().numpy()[0], rtol=1e-12)


# ----------------------------------------------------------------------------- bad input

F = lambda z: jnp.sum(z**2)  # noqa: E731
X3 = jnp.ones(3)
BAD = [
    (lambda: smooth_grad(0, F, X3, stdev=0.1), TypeError, "key must be a PRNG key"),
    (lambda: smooth_grad(jax.random.split(KEY), F, X3, stdev=0.1), ValueError, "single PRNG"),
    (lambda: smooth_grad(KEY, F, X3, stdev=-0.1), ValueError, "stdev must be finite and >= 0"),
    (lambda: smooth_grad(KEY, F, X3, stdev=np.float32("nan")), ValueError, "stdev"),
    (lambda: smooth_grad(KEY, F, X3, stdev=jnp.ones(2)), TypeError, "stdev must be a real"),
    (lambda: smooth_grad(KEY, F, X3, stdev=True), TypeError, "stdev must be a real"),
    (lambda: smooth_grad(KEY, F, X3, stdev=0.1, num_samples=0), ValueError, "num_samples"),
    (lambda: smooth_grad(KEY, F, X3, stdev=0.1, num_samples=2.0), TypeError, "num_samples"),
    (lambda: smooth_grad(KEY, F, X3, stdev=0.1, squared=1), TypeError, "squared must be a bool"),
    (lambda: smooth_grad(KEY, F, X3, stdev=0.1, chunk_size=0), ValueError, "chunk_size"),
    (lambda: smooth_grad(KEY, lambda z: z, X3, stdev=0.1), ValueError, "fun must return a scalar"),
    (lambda: smooth_grad(KEY, F, jnp.ones(3, int), stdev=0.1), TypeError, "x must be floating"),
    (lambda: smooth_grad(KEY, F, jnp.array([1.0, jnp.inf]), stdev=0.1), ValueError, "x must be"),
    (lambda: smooth_grad(KEY, "f", X3, stdev=0.1), TypeError, "fun must be callable"),
    (lambda: expected_gradients(KEY, F, X3, jnp.ones(3)), ValueError, "baselines must have shape"),
    (lambda: expected_gradients(KEY, F, X3, jnp.ones((2, 4))), ValueError, "(B, *(3,))"),
    (lambda: expected_gradients(KEY, F, X3, jnp.ones((0, 3))), ValueError, "baselines"),
    (lambda: expected_gradients(KEY, F, X3, None), ValueError, "baselines must be given"),
    (lambda: expected_gradients(KEY, F, X3, [jnp.ones((2, 3))]), ValueError, "pytree structure"),
    (
        lambda: expected_gradients(KEY, F, X3, jnp.full((2, 3), jnp.nan)),
        ValueError,
        "baselines must be finite",
    ),
    (
        lambda: expected_gradients(KEY, F, X3, jnp.ones((2, 3), int)),
        TypeError,
        "baselines must be floating",
    ),
    (
        lambda: expected_gradients(
            KEY, lambda t: F(t[0]) + F(t[1]), (X3, X3), (jnp.ones((2, 3)), jnp.ones((3, 3)))
        ),
        ValueError,
        "one leading size",
    ),
    (lambda: expected_gradients(KEY, F, X3, jnp.ones((2, 3)), num_samples=0), ValueError, "num_"),
    (lambda: expected_gradients(None, F, X3, jnp.ones((2, 3))), TypeError, "key"),
    (lambda: expected_gradients(0, F, X3, jnp.ones((2, 3))), TypeError, "key must be a PRNG key"),
    (lambda: smooth_grad(KEY, F, X3, stdev="0.1"), TypeError, "stdev must be a real scalar"),
    (lambda: smooth_grad(KEY, F, X3, stdev=0.1, num_samples=jnp.int32(0)), ValueError,
     "num_samples must be >= 1"),
]  # fmt: skip


@pytest.mark.parametrize("call,error,words", BAD, ids=[w for _, _, w in BAD])
def test_bad_input_names_the_argument(call, error, words):
    with pytest.raises(
        error, match=words.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")
    ):
        call()


def test_traced_stdev_is_accepted_and_nan_propagates():
    got = jax.jit(lambda s: smooth_grad(KEY, F, X3, stdev=s, num_samples=4))(jnp.float32(0.0))
    np.testing.assert_allclose(got, 2 * X3)
    traced_nan = jax.jit(lambda x: smooth_grad(KEY, F, x, stdev=0.1))(jnp.array([1.0, jnp.nan, 0]))
    assert bool(jnp.isnan(traced_nan[1]))
