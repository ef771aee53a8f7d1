"""Gradient accumulation (accumulate) and in-step micro-batching (microbatched_value_and_grad)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradjax import optim


def regression(dtype, n=32):
    kx, kn = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (n, 4), dtype)
    y = jnp.sin(x @ jnp.array([1.0, -1.0, 0.5, 2.0], dtype)) + 0.1 * jax.random.normal(
        kn, (n,), dtype
    )
    params = {"w": jnp.full((4,), 0.1, dtype), "b": jnp.zeros((), dtype)}

    def loss(p, batch):
        xb, yb = batch
        residual = jnp.tanh(xb @ p["w"]) + p["b"] - yb
        return jnp.mean(residual**2)

    return params, loss, x, y


OPTIMIZERS = {
    "momentum": lambda: optax.sgd(0.1, momentum=0.9),
    "adam": lambda: optax.adam(0.05),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_accumulated_micro_batches_equal_one_big_batch(name):
    k, micro, updates = 4, 8, 3
    with jax.enable_x64(True):
        params, loss, x, y = regression(jnp.float64, n=k * micro)
        big, acc = OPTIMIZERS[name](), optim.accumulate(OPTIMIZERS[name](), k)
        p_big, s_big = params, big.init(params)
        p_acc, s_acc = params, acc.init(params)
        assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(s_acc.acc_grads))
        acc_update, grad = jax.jit(acc.update), jax.jit(jax.grad(loss))
        for step in range(updates):
            # Different data each real step: rotate the big batch.
            xs, ys = jnp.roll(x, 5 * step, axis=0), jnp.roll(y, 5 * step, axis=0)
            u, s_big = jax.jit(big.update)(grad(p_big, (xs, ys)), s_big, p_big)
            p_big = optax.apply_updates(p_big, u)
            for j in range(k):
                rows = slice(j * micro, (j + 1) * micro)
                g = grad(p_acc, (xs[rows], ys[rows]))
                before = s_acc.inner_opt_state
                u, s_acc = acc_update(g, s_acc, p_acc)
                if j < k - 1:  # not a boundary: exactly zero, inner state untouched
                    chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, u))
                    chex.assert_trees_all_equal(s_acc.inner_opt_state, before)
                p_acc = optax.apply_updates(p_acc, u)
            assert int(s_acc.mini_step) == 0 and int(s_acc.gradient_step) == step + 1
            chex.assert_trees_all_close(p_acc, p_big, rtol=1e-12, atol=1e-14)
        if name == "adam":  # the bias-correction count counts real updates only
            assert int(s_acc.inner_opt_state[0].count) == updates


def test_every_k_1_is_the_optimizer_itself():
    with jax.enable_x64(True):
        params, loss, x, y = regression(jnp.float64)
        runs = []
        for transform in (optax.adam(0.05), optim.accumulate(optax.adam(0.05), 1)):

            def step(carry, _, transform=transform):
                p, s = carry
                u, s = transform.update(jax.grad(loss)(p, (x, y)), s, p)
                return (optax.apply_updates(p, u), s), None

            carry = (params, transform.init(params))
            runs.append(jax.jit(lambda c, step=step: jax.lax.scan(step, c, length=5)[0][0])(carry))
        # Same arithmetic; only XLA's fusion inside MultiSteps' lax.cond may round differently.
        chex.assert_trees_all_close(runs[0], runs[1], rtol=1e-14, atol=1e-16)


def test_float32_result_equals_optax_multisteps():
    params, loss, x, y = regression(jnp.float32)
    ours, theirs = optim.accumulate(optax.adam(0.05), 4), optax.MultiSteps(optax.adam(0.05), 4)
    p1, s1, p2, s2 = params, ours.init(params), params, theirs.init(params)
    grad = jax.jit(jax.grad(loss))
    for j in range(8):
        rows = slice(4 * j, 4 * j + 4)
        u1, s1 = jax.jit(ours.update)(grad(p1, (x[rows], y[rows])), s1, p1)
        u2, s2 = jax.jit(theirs.update)(grad(p2, (x[rows], y[rows])), s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    chex.assert_trees_all_equal(p1, p2)


def test_accumulator_keeps_the_gradient_dtype_unlike_multisteps_default():
    with jax.enable_x64(True):
        params = {"w": jnp.zeros((3,), jnp.float64)}
        ours = optim.accumulate(optax.sgd(1.0), 3).init(params)
        theirs = optax.MultiSteps(optax.sgd(1.0), 3).init(params)
        assert ours.acc_grads["w"].dtype == jnp.float64
        assert theirs.acc_grads["w"].dtype == jnp.float32  # why accumulate exists
        # Gradients that float32 cannot hold: the mean stays exact in float64.
        acc = optim.accumulate(optax.sgd(1.0), 3)
        state, grads = acc.init(params), [1.0 + 2.0**-40, 1.0, 1.0 - 2.0**-40]
        for g in grads:
            u, state = acc.update({"w": jnp.full((3,), g, jnp.float64)}, state)
        np.testing.assert_allclose(u["w"], -np.mean(grads), rtol=1e-15)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_state_types_are_fixed_at_init_and_no_retrace(dtype):
    params = {"w": jnp.ones((3,), dtype), "b": jnp.ones((), dtype)}
    transform = optax.chain(optim.clip_by_global_norm(1.0), optim.accumulate(optax.adam(0.1), 2))
    state = transform.init(params)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p, s, g):
        u, s = transform.update(g, s, p)
        return optax.apply_updates(p, u), s

    def signature(tree):
        return jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)), tree)

    before = signature(state)
    for i in range(5):
        params, state = step(params, state, jax.tree.map(lambda a, i=i: a * (i + 1), params))
        assert signature(state) == before
        assert params["w"].dtype == dtype
    # The state is a valid lax.scan carry (its types do not drift).
    jax.lax.scan(lambda c, _: (step(*c, params), None), (params, state), length=3)


def test_bfloat16_gradients_accumulate_in_float32():
    # Eight bf16 gradients whose running mean bf16 cannot hold (its step is 0.25 in [32, 64)).
    # The float32 accumulator holds the exact running mean; the inner optimizer gets the
    # window's mean 32.875 rounded once to bf16 (33). Accumulating in bf16 drifts (to 32.75).
    values = np.array([32, 33, 33.5, 33, 32.5, 32.25, 33.25, 33.5], np.float32)
    grads = [{"w": jnp.full((2,), v, jnp.bfloat16)} for v in values]

    def run(transform):
        state, update = (
            transform.init({"w": jnp.zeros((2,), jnp.bfloat16)}),
            jax.jit(transform.update),
        )
        for g in grads[:-1]:
            _, state = update(g, state)
        return update(grads[-1], state)[0]["w"], state.acc_grads["w"]

    update, acc = run(optim.accumulate(optax.sgd(1.0), len(values)))
    assert acc.dtype == jnp.float32 and update.dtype == jnp.bfloat16
    np.testing.assert_allclose(acc, np.mean(values[:-1].astype(np.float64)), rtol=1e-7)
    chex.assert_trees_all_equal(update, -jnp.full((2,), np.mean(values), jnp.bfloat16))
    in_bf16, _ = run(optax.MultiSteps(optax.sgd(1.0), len(values), accumulator_dtype=jnp.bfloat16))
    assert not np.array_equal(in_bf16.astype(np.float32), update.astype(np.float32))


def test_nan_gradient_makes_the_update_nan():
    acc = optim.accumulate(optax.sgd(1.0), 2)
    state = acc.init({"w": jnp.zeros(2)})
    _, state = acc.update({"w": jnp.array([jnp.nan, 1.0])}, state)
    u, _ = acc.update({"w": jnp.array([1.0, 1.0])}, state)
    assert np.isnan(u["w"][0]) and u["w"][1] == -1.0


# ------------------------------------------------------------------ microbatched_value_and_grad


class MicrobatchedTest(chex.TestCase):
    """n micro-batches give jax.value_and_grad's value and gradient, with and without jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_microbatched_equals_value_and_grad_float64(self):
        with jax.enable_x64(True):
            params, loss, x, y = regression(jnp.float64)
            value, grads = jax.value_and_grad(loss)(params, (x, y))
            for num_microbatches in (1, 4, 8):
                fn = self.variant(optim.microbatched_value_and_grad(loss, num_microbatches))
                m_value, m_grads = fn(params, (x, y))
                assert m_value.dtype == jnp.float64
                np.testing.assert_allclose(m_value, value, rtol=1e-13)
                chex.assert_trees_all_close(m_grads, grads, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("num_microbatches", [1, 2])
def test_aux_is_stacked_alike_for_one_and_more_micro_batches(num_microbatches):
    params, loss, x, y = regression(jnp.float32)

    def loss_aux(p, batch):
        value = loss(p, batch)
        return value, {"value": value, "rows": batch[1]}

    fn = optim.microbatched_value_and_grad(loss_aux, num_microbatches, has_aux=True)
    (value, aux), _ = fn(params, (x, y))
    assert aux["value"].shape == (num_microbatches,)
    assert aux["rows"].shape == (num_microbatches, 32 // num_microbatches)
    np.testing.assert_array_equal(aux["rows"].reshape(-1), y)
    np.testing.assert_allclose(aux["value"].mean(), value, rtol=1e-6)


def test_nan_in_one_micro_batch_shows_in_value_and_grads():
    params, loss, x, y = regression(jnp.float32)
    y = y.at[3].set(jnp.nan)  # micro-batch 0 of 4
    value, grads = jax.jit(optim.microbatched_value_and_grad(loss, 4))(params, (x, y))
    assert np.isnan(value) and all(np.all(np.isnan(g)) for g in jax.tree.leaves(grads))


def test_microbatched_has_aux_stacks_aux_and_passes_extra_arguments():
    with jax.enable_x64(True):
        params, loss, x, y = regression(jnp.float64)

        def loss_aux(p, batch, scale, *, offset):
            value = scale * loss(p, batch) + offset
            return value, {"value": value, "first_x": batch[0][0]}

        (value, aux), grads = jax.value_and_grad(loss_aux, has_aux=True)(
            params, (x, y), 2.0, offset=1.0
        )
        fn = optim.microbatched_value_and_grad(loss_aux, 4, has_aux=True)
        (m_value, m_aux), m_grads = jax.jit(fn)(params, (x, y), 2.0, offset=1.0)
        np.testing.assert_allclose(m_value, value, rtol=1e-13)
        chex.assert_trees_all_close(m_grads, grads, rtol=1e-12, atol=1e-15)
        assert m_aux["value"].shape == (4,) and m_aux["first_x"].shape == (4, 4)
        np.testing.assert_allclose(m_aux["value"].mean(), aux["value"], rtol=1e-13)
        np.testing.assert_array_equal(m_aux["first_x"], x[::8])


def test_microbatched_keeps_bfloat16_parameters_and_is_close_to_full_batch():
    params, loss, x, y = regression(jnp.float32)
    params = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    value, grads = jax.jit(jax.value_and_grad(loss))(params, (x, y))
    m_value, m_grads = jax.jit(optim.microbatched_value_and_grad(loss, 4))(params, (x, y))
    assert m_grads["w"].dtype == jnp.bfloat16 and m_value.dtype == value.dtype
    chex.assert_trees_all_close(
        jax.tree.map(lambda a: a.astype(jnp.float32), m_grads),
        jax.tree.map(lambda a: a.astype(jnp.float32), grads),
        rtol=0.05,
        atol=0.02,
    )


# ------------------------------------------------------------------ skipping bad micro-batches


def run_accumulate(transform, grads):
    state, update, out = transform.init(grads[0]), jax.jit(transform.update), []
    for g in grads:
        u, state = update(g, state)
        out.append(u)
    return out, state


def test_skip_nonfinite_updates_with_the_mean_of_the_good_micro_batches():
    with jax.enable_x64(True):
        good = [{"w": jnp.array([1.0, 2.0]) * (i + 1)} for i in range(4)]
        bad = {"w": jnp.array([jnp.nan, 1.0])}
        inf = {"w": jnp.array([1.0, jnp.inf])}
        stream = [good[0], bad, good[1], inf, good[2], good[3]]
        out, state = run_accumulate(
            optim.accumulate(optax.sgd(1.0), 2, skip_nonfinite=True), stream
        )
        want, _ = run_accumulate(optim.accumulate(optax.sgd(1.0), 2), good)
        kept = [u for u, g in zip(out, stream, strict=True) if g is not bad and g is not inf]
        chex.assert_trees_all_equal(kept, want)  # the same updates at the same good steps
        for i in (1, 3):  # a skipped micro-batch moves nothing
            chex.assert_trees_all_equal(out[i], {"w": jnp.zeros(2)})
        assert int(optax.tree.get(state, "num_skipped")) == 2
        assert int(state.gradient_step) == 2 and int(state.mini_step) == 0


def test_max_norm_ratio_skips_spikes_against_the_running_median():
    norms = [1.0, 1.2, 0.9, 50.0, 1.1, 3.5, 1.0]  # 50 > 3·median; 3.5 < 3·median(1, 1.2, ...)
    grads = [{"w": jnp.array([n, 0.0])} for n in norms]
    tx = optim.accumulate(optax.sgd(1.0), 1, max_norm_ratio=3.0, norm_window=4)
    out, state = run_accumulate(tx, grads)
    moved = [float(u["w"][0]) != 0.0 for u in out]
    assert moved == [True, True, True, False, True, False, True]
    assert int(optax.tree.get(state, "num_skipped")) == 2
    # The window holds the last 4 accepted norms, newest first.
    np.testing.assert_allclose(state.skip_state.recent_norms, [1.0, 1.1, 0.9, 1.2])


def test_skipping_keeps_the_state_types_and_traces_once():
    params = {"w": jnp.ones((3,))}
    tx = optim.accumulate(optax.adam(0.1), 2, skip_nonfinite=True, max_norm_ratio=10.0)
    state = tx.init(params)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(s, g):
        return tx.update(g, s, params)

    for g in (1.0, jnp.nan, 2.0, 3.0):
        _, new = step(state, {"w": jnp.full((3,), g)})
        chex.assert_trees_all_equal_shapes_and_dtypes(new, state)
        state = new


def test_microbatched_skip_nonfinite_is_the_mean_over_the_good_micro_batches():
    with jax.enable_x64(True):
        params, loss, x, y = regression(jnp.float64)
        y = y.at[3].set(jnp.nan).at[20].set(jnp.inf)  # spoils micro-batches 0 and 2 of 4
        good = np.r_[8:16, 24:32]
        value, grads = jax.value_and_grad(loss)(params, (x[good], y[good]))
        fn = optim.microbatched_value_and_grad(loss, 4, skip_nonfinite=True)
        (m_value, info), m_grads = jax.jit(fn)(params, (x, y))
        np.testing.assert_allclose(m_value, value, rtol=1e-13)
        chex.assert_trees_all_close(m_grads, grads, rtol=1e-12, atol=1e-15)
        assert int(info.num_skipped) == 2 and info.aux is None
        # Nothing bad: the same as without the option; everything bad: NaN, never zeros.
        clean_y = y.at[3].set(0.0).at[20].set(0.0)
        (clean, info), _ = fn(params, (x, clean_y))
        assert int(info.num_skipped) == 0
        plain = optim.microbatched_value_and_grad(loss, 4)(params, (x, clean_y))[0]
        np.testing.assert_allclose(clean, plain, rtol=1e-14)
        (all_bad, info), all_bad_grads = fn(params, (x, jnp.full_like(y, jnp.nan)))
        assert int(info.num_skipped) == 4 and np.isnan(all_bad)
        assert np.all(np.isnan(all_bad_grads["w"]))
