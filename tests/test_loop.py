"""The fixed-length scan driver: freezing, counting, vmap, grad, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax._loop import scan_loop


def halve(num_steps, threshold):
    return scan_loop(
        lambda x: x / 2,
        jnp.float32(8.0),
        num_steps=num_steps,
        converged=lambda x: x < threshold,
        record=lambda x: x,
    )


def test_freezes_once_converged_and_counts_real_steps():
    out = halve(6, 1.5)
    np.testing.assert_array_equal(out.trace, [4, 2, 1, 1, 1, 1])
    assert out.trace.shape == (6,)
    assert int(out.num_steps) == 3 and bool(out.converged)
    assert float(out.state) == 1.0


def test_not_converged_runs_every_step():
    out = halve(2, 0.1)
    np.testing.assert_array_equal(out.trace, [4, 2])
    assert int(out.num_steps) == 2 and not bool(out.converged)


def test_zero_steps_returns_the_initial_state():
    out = halve(0, 1.5)
    assert out.trace.shape == (0,) and float(out.state) == 8.0 and int(out.num_steps) == 0


def test_vmap_freezes_each_problem_separately():
    def run(threshold):
        return halve(6, threshold)

    batched = jax.vmap(run)(jnp.array([5.0, 1.5, 0.1]))
    for i, threshold in enumerate([5.0, 1.5, 0.1]):
        single = run(threshold)
        np.testing.assert_array_equal(batched.trace[i], single.trace)
        assert int(batched.num_steps[i]) == int(single.num_steps)
    np.testing.assert_array_equal(batched.num_steps, [1, 3, 6])


def test_grad_flows_through_the_loop():
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


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (2.0, TypeError), (True, TypeError)])
def test_bad_num_steps(bad, error):
    with pytest.raises(error, match="num_steps"):
        halve(bad, 1.0)
