"""The loop driver: freezing, counting, vmap, grad, early exit, bad input, for both modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax._loop import branch, scan_loop, while_loop

LOOPS = pytest.mark.parametrize("loop", [scan_loop, while_loop], ids=["scan", "while"])


def halve(num_steps, threshold, loop=scan_loop):
    return loop(
        lambda x: x / 2,
        jnp.float32(8.0),
        num_steps=num_steps,
        converged=lambda x: x < threshold,
        record=lambda x: x,
    )


@LOOPS
def test_freezes_once_converged_and_counts_real_steps(loop):
    out = halve(6, 1.5, loop)
    np.testing.assert_array_equal(out.trace, [4, 2, 1, 1, 1, 1])
    assert out.trace.shape == (6,)
    assert int(out.num_steps) == 3 and bool(out.converged)
    assert float(out.state) == 1.0


@LOOPS
def test_not_converged_runs_every_step(loop):
    out = halve(2, 0.1, loop)
    np.testing.assert_array_equal(out.trace, [4, 2])
    assert int(out.num_steps) == 2 and not bool(out.converged)


@LOOPS
def test_zero_steps_returns_the_initial_state(loop):
    out = halve(0, 1.5, loop)
    assert out.trace.shape == (0,) and float(out.state) == 8.0 and int(out.num_steps) == 0


@LOOPS
def test_vmap_freezes_each_problem_separately(loop):
    def run(threshold):
        return halve(6, threshold, loop)

    batched = jax.vmap(run)(jnp.array([5.0, 1.5, 0.1]))
    for i, threshold in enumerate([5.0, 1.5, 0.1]):
        single = run(threshold)
        np.testing.assert_array_equal(batched.trace[i], single.trace)
        assert int(batched.num_steps[i]) == int(single.num_steps)
    np.testing.assert_array_equal(batched.num_steps, [1, 3, 6])


def count_steps(loop, num_steps):
    """Host-side count of executed step bodies for a vmapped batch that needs 3 steps."""
    calls = []

    def step(x):
        jax.debug.callback(lambda: calls.append(1))
        return x / 2

    def run(threshold):
        return loop(
            step,
            jnp.float32(8.0),
            num_steps=num_steps,
            converged=lambda x: x < threshold,
            record=lambda x: x,
        )

    jax.block_until_ready(jax.jit(jax.vmap(run))(jnp.array([5.0, 1.5])))
    return len(calls)


def test_while_loop_exits_when_every_problem_is_done():
    # The batch needs 3 steps: the while loop runs its body 3 times whatever the bound,
    # while the scan runs (and discards) every one of num_steps iterations.
    assert count_steps(while_loop, 10) == count_steps(while_loop, 400) == 3
    assert count_steps(scan_loop, 10) == 10


def test_grad_flows_through_the_scan_loop():
    # x_{k+1} = a x_k, frozen after 3 steps: x_final = a^3 x0, d/da = 3 a^2 x0.
    def final(a):
        out = scan_loop(
            lambda s: (s[0] * a, s[1] + 1),
            (jnp.float32(2.0), jnp.int32(0)),
            num_steps=5,
            converged=lambda s: s[1] >= 3,
            record=lambda s: s[0],
        )
        return out.state[0]

    np.testing.assert_allclose(jax.grad(final)(1.5), 3 * 1.5**2 * 2.0, rtol=1e-6)


@pytest.mark.parametrize("unrolled", [False, True])
def test_branch_takes_fn_only_where_pred_holds(unrolled):
    def run(x):
        return branch(x > 0, lambda v: (jnp.sqrt(v),), x, (jnp.zeros_like(x),), unrolled=unrolled)

    np.testing.assert_array_equal(jax.vmap(run)(jnp.array([4.0, -1.0, 9.0]))[0], [2.0, 0.0, 3.0])


@LOOPS
@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_num_steps(loop, bad, error):
    with pytest.raises(error, match="num_steps"):
        halve(bad, 1.0, loop)


def test_scan_loop_applies_frozen_after_convergence_without_counting_it():
    # state (x, k): real steps halve x; the frozen map only counts its own calls.
    out = scan_loop(
        lambda s: (s[0] / 2, s[1]),
        (jnp.float32(8.0), jnp.int32(0)),
        num_steps=6,
        converged=lambda s: s[0] < 1.5,
        record=lambda s: s[0],
        frozen=lambda s: (s[0], s[1] + 1),
    )
    np.testing.assert_array_equal(out.trace, [4, 2, 1, 1, 1, 1])
    assert int(out.num_steps) == 3 and int(out.state[1]) == 3
