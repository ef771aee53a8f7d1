"""per_example_clipped_grad (method="vmap"): the clipped mean equals a Python loop over
examples, in both forms, chunked or not, jitted or not; dtypes and aux."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax import optim


def problem(dtype, n=8):
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (n, 3), dtype) * jnp.arange(1, n + 1, dtype=dtype)[:, None]
    y = jax.random.normal(ky, (n,), dtype)
    params = {"w": jnp.array([0.5, -1.0, 2.0], dtype), "b": jnp.asarray(0.3, dtype)}

    def fun(p, batch):
        xb, yb = batch
        return jnp.mean((jnp.tanh(xb @ p["w"]) + p["b"] - yb) ** 2)

    return params, fun, (x, y)


def loop_oracle(fun, params, batch, max_norm, form):
    """Per-example gradients one at a time, clipped with NumPy in float64, then averaged."""
    n = len(batch[1])
    total, norms, grad = None, [], jax.jit(jax.grad(fun))
    for i in range(n):
        g = grad(params, jax.tree.map(lambda a, i=i: a[i : i + 1], batch))
        leaves = [np.asarray(v, np.float64) for v in jax.tree.leaves(g)]
        norm = np.sqrt(sum(np.sum(v**2) for v in leaves))
        c = min(1.0, max_norm / norm) if form == "hard" else max_norm / (norm + max_norm)
        scaled = [c * v for v in leaves]
        total = scaled if total is None else [a + b for a, b in zip(total, scaled, strict=True)]
        norms.append(norm)
    return [t / n for t in total], np.array(norms)


class LoopOracleTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_clipped_mean_equals_the_loop_float64(self):
        with jax.enable_x64(True):
            params, fun, batch = problem(jnp.float64)
            for form in ("hard", "soft"):
                want, want_norms = loop_oracle(fun, params, batch, 1.5, form)
                assert 0 < np.mean(want_norms > 1.5) < 1  # some clipped, some not
                for chunk_size in (None, 2):
                    grad_fn = optim.per_example_clipped_grad(
                        fun, 1.5, form=form, chunk_size=chunk_size
                    )
                    (value, info), grads = self.variant(grad_fn)(params, batch)
                    for got, ref in zip(jax.tree.leaves(grads), want, strict=True):
                        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
                    np.testing.assert_allclose(value, fun(params, batch), rtol=1e-13)
                    assert grads["w"].dtype == jnp.float64
                    np.testing.assert_allclose(info.norms, want_norms, rtol=1e-6)
                    assert float(info.clipped_fraction) == np.mean(want_norms > 1.5)


def test_aux_is_per_example_and_extra_arguments_pass_through():
    params, fun, batch = problem(jnp.float32)

    def fun_aux(p, b, scale, *, offset):
        value = scale * fun(p, b) + offset
        return value, {"value": value, "y": b[1]}

    grad_fn = optim.per_example_clipped_grad(fun_aux, 1.0, has_aux=True, chunk_size=4)
    (value, info), _ = jax.jit(grad_fn)(params, batch, 2.0, offset=1.0)
    assert info.aux["value"].shape == (8,)
    # Example i's aux (of its batch of one) in row i.
    np.testing.assert_array_equal(info.aux["y"], batch[1][:, None])
    np.testing.assert_allclose(jnp.mean(info.aux["value"]), value, rtol=1e-6)
    np.testing.assert_allclose(value, 2.0 * fun(params, batch) + 1.0, rtol=1e-6)
    assert optim.per_example_clipped_grad(fun, 1.0)(params, batch)[0][1].aux is None


def test_each_example_moves_the_mean_by_less_than_gamma_over_b():
    # Sensitivity: replacing the batch by one example's clipped gradient bounds it by γ.
    params, fun, batch = problem(jnp.float32)
    for form in ("hard", "soft"):
        grad_fn = jax.jit(optim.per_example_clipped_grad(fun, 0.1, form=form))
        for i in range(3):
            one = jax.tree.map(lambda a, i=i: a[i : i + 1], batch)
            _, g = grad_fn(params, one)
            norm = np.sqrt(sum(float(jnp.sum(v**2)) for v in jax.tree.leaves(g)))
            assert norm <= 0.1 * (1 + 1e-6)


def test_bfloat16_parameters_keep_their_dtype_and_norms_are_float32():
    params, fun, batch = problem(jnp.float32)
    low = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    (_, info), grads = jax.jit(optim.per_example_clipped_grad(fun, 1.0))(low, batch)
    (_, ref_info), ref = jax.jit(optim.per_example_clipped_grad(fun, 1.0))(
        jax.tree.map(lambda a: a.astype(jnp.float32), low), batch
    )
    assert grads["w"].dtype == jnp.bfloat16 and info.norms.dtype == jnp.float32
    np.testing.assert_allclose(info.norms, ref_info.norms, rtol=0.05)
    np.testing.assert_allclose(grads["w"].astype(jnp.float32), ref["w"], rtol=0.05, atol=0.01)


@pytest.mark.parametrize("form", ["hard", "soft"])
def test_zero_gradients_give_zero_and_no_nan(form):
    params, fun, batch = problem(jnp.float32)
    (_, info), grads = optim.per_example_clipped_grad(lambda p, b: 0.0 * fun(p, b), 1.0, form=form)(
        params, batch
    )
    assert np.all(np.asarray(info.norms) == 0)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads))
