"""least_squares: Levenberg-Marquardt and Gauss-Newton against SciPy and the MGH test set."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from _mgh_residuals import PROBLEMS, solved

from gradjax import newton

NUM_PARAMS = max(len(p.x0) for p in PROBLEMS)
SIZES = [
    jax.eval_shape(p.residuals, jax.ShapeDtypeStruct((len(p.x0),), jnp.float64)).shape[0]
    for p in PROBLEMS
]
NUM_RESIDUALS = max(SIZES)


def padded(x, index):
    """Problem ``index``'s residuals of ``x[:n]``, zero-padded to ``NUM_RESIDUALS``: every
    problem in one compiled function (``lax.switch``), so the set costs one compile."""

    def branch(problem, size):
        def fn(x):
            r = problem.residuals(x[: len(problem.x0)])
            return jnp.zeros(NUM_RESIDUALS, x.dtype).at[:size].set(r)

        return fn

    branches = [branch(p, m) for p, m in zip(PROBLEMS, SIZES, strict=True)]
    return jax.lax.switch(index, branches, x)


def padded_start(problem):
    return np.pad(np.array(problem.x0), (0, NUM_PARAMS - len(problem.x0)))


@functools.cache
def mgh_fits():
    """gradjax LM on every MGH problem at once (a vmapped batch), and SciPy's lm on each."""
    with jax.enable_x64(True):
        index = jnp.arange(len(PROBLEMS))
        x0 = jnp.asarray(np.stack([padded_start(p) for p in PROBLEMS]))
        fit = jax.jit(jax.vmap(lambda i, x: newton.least_squares(padded, x, i, num_steps=1000)))(
            index, x0
        )
        fun = jax.jit(padded)
        jac = jax.jit(jax.jacfwd(padded))
        scipy_fits = []
        for i, (p, m) in enumerate(zip(PROBLEMS, SIZES, strict=True)):
            n = len(p.x0)
            scipy_fits.append(
                scipy.optimize.least_squares(
                    lambda x, i=i, n=n, m=m: np.asarray(fun(padded_start_of(x), i))[:m],
                    np.array(p.x0),
                    jac=lambda x, i=i, n=n, m=m: np.asarray(jac(padded_start_of(x), i))[:m, :n],
                    method="lm",
                )
            )
    return jax.tree.map(np.asarray, fit), scipy_fits


def padded_start_of(x):
    return jnp.asarray(np.pad(x, (0, NUM_PARAMS - x.size)))


def test_mgh_levenberg_marquardt_solves_at_least_what_scipy_lm_solves():
    fit, scipy_fits = mgh_fits()
    ours = [solved(p, 2 * c) for p, c in zip(PROBLEMS, fit.cost, strict=True)]
    theirs = [solved(p, 2 * s.cost) for p, s in zip(PROBLEMS, scipy_fits, strict=True)]
    assert len(PROBLEMS) >= 18
    assert sum(ours) >= sum(theirs) >= 18, (ours, theirs)
    # A solved problem reports SUCCESS (a non-zero-residual minimum by the rounding tests).
    statuses = [newton.Status(int(s)).name for s in fit.status]
    failed = [
        (p.name, s)
        for p, s, ok in zip(PROBLEMS, statuses, ours, strict=True)
        if ok and s != "SUCCESS"
    ]
    assert not failed, failed
    # The padding coordinates never move (their columns of J are zero).
    for p, x in zip(PROBLEMS, fit.params, strict=True):
        assert np.all(x[len(p.x0) :] == 0)


def exponential(p, t, y):
    """Residuals of the two-parameter decay a·exp(-k·t)."""
    return p[0] * jnp.exp(-p[1] * t) - y


def decay_data(num_problems, num_points=20, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 3.0, num_points)
    a = rng.uniform(1.0, 3.0, num_problems)
    k = rng.uniform(0.5, 2.0, num_problems)
    y = a[:, None] * np.exp(-k[:, None] * t) + 0.05 * rng.standard_normal((num_problems, t.size))
    return t, y


def scipy_fit(t, y, x0, **kwargs):
    return scipy.optimize.least_squares(
        lambda p: np.asarray(p[0] * np.exp(-p[1] * t) - y),
        x0,
        jac=lambda p: np.stack([np.exp(-p[1] * t), -p[0] * t * np.exp(-p[1] * t)], axis=1),
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        **kwargs,
    ).x


@pytest.mark.parametrize("method", ["levenberg_marquardt", "gauss_newton"])
def test_vmapped_batch_equals_a_loop_of_fits_and_scipy(method):
    with jax.enable_x64(True):
        t, y = decay_data(4)
        x0 = jnp.array([1.0, 1.0])
        fit = jax.jit(lambda t, y: newton.least_squares(exponential, x0, t, y, method=method))
        batch = jax.jit(jax.vmap(fit, in_axes=(None, 0)))(t, y)
        loop = np.stack([fit(t, row).params for row in y])
        reference = np.stack([scipy_fit(t, row, np.array(x0), method="lm") for row in y])
        np.testing.assert_allclose(batch.params, loop, atol=1e-10)
        np.testing.assert_allclose(batch.params, reference, atol=1e-6)
        assert np.all(np.asarray(batch.status) == newton.Status.SUCCESS)
        assert np.all(np.asarray(batch.grad_norms[:, -1]) <= 1e-8)
        if method == "levenberg_marquardt":  # jit == eager (the loop without an outer jit)
            eager = newton.least_squares(exponential, x0, jnp.asarray(t), jnp.asarray(y[0]))
            np.testing.assert_allclose(eager.params, loop[0], atol=1e-12)
        # The cost and the residuals belong to the returned params, values never increase.
        r = exponential(batch.params[1], t, y[1])
        np.testing.assert_allclose(batch.cost[1], 0.5 * r @ r, rtol=1e-12)
        np.testing.assert_allclose(batch.residuals[1], r, atol=1e-12)
        assert np.all(np.diff(np.asarray(batch.values), axis=1) <= 1e-15)


def test_early_exit_a_larger_bound_changes_nothing():
    with jax.enable_x64(True):
        t, y = map(jnp.asarray, decay_data(3, seed=1))

        @functools.partial(jax.jit, static_argnums=0)
        def solve(num_steps):
            return jax.vmap(
                lambda row: newton.least_squares(
                    exponential, jnp.ones(2), t, row, num_steps=num_steps
                )
            )(y)

        short, long = solve(40), solve(1000)
        np.testing.assert_array_equal(short.params, long.params)
        np.testing.assert_array_equal(short.num_steps, long.num_steps)
        assert int(np.max(long.num_steps)) < 40
        # The traces are flat after each problem's last step.
        for values, steps, cost in zip(long.values, long.num_steps, long.cost, strict=True):
            np.testing.assert_array_equal(values[int(steps) - 1 :], cost)


def test_pytree_params_and_residuals_equal_the_flat_fit():
    with jax.enable_x64(True):
        t, y = decay_data(1, seed=2)
        y = jnp.asarray(y[0])

        def tree_residuals(p, t, y):
            r = p["a"] * jnp.exp(-p["k"][0] * t) - y
            return {"head": r[:5], "tail": r[5:].reshape(3, -1)}

        tree = jax.jit(newton.least_squares, static_argnums=0)(
            tree_residuals, {"a": jnp.array(1.0), "k": jnp.ones(1)}, t, y
        )
        flat = jax.jit(newton.least_squares, static_argnums=0)(exponential, jnp.ones(2), t, y)
        np.testing.assert_allclose(tree.params["a"], flat.params[0], atol=1e-10)
        np.testing.assert_allclose(tree.params["k"], flat.params[1:], atol=1e-10)
        assert tree.residuals["tail"].shape == (3, 5)
        np.testing.assert_allclose(tree.cost, flat.cost, rtol=1e-12)


def test_implicit_gradient_equals_central_differences_and_unrolled():
    """d/dθ of the fitted params, the data scaled by θ: a non-zero-residual fit, where
    the Gauss-Newton matrix alone would give a wrong gradient."""
    with jax.enable_x64(True):
        t, y = decay_data(1, seed=3)
        t, y = jnp.asarray(t), jnp.asarray(y[0]) + 0.3 * jnp.sin(7 * jnp.asarray(t))

        @functools.partial(jax.jit, static_argnums=(1, 2))
        def solution(theta, adjoint, num_steps=100):
            fit = newton.least_squares(
                lambda p, s: exponential(p, t, s * y + s**2 * t),
                jnp.ones(2),
                theta,
                adjoint=adjoint,
                num_steps=num_steps,
            )
            return fit.params

        theta, h = 1.2, 1e-5
        implicit = jax.jit(jax.jacobian(solution), static_argnums=1)(theta, "implicit")
        unrolled = jax.jit(jax.jacobian(solution), static_argnums=(1, 2))(theta, "unrolled", 40)
        central = (solution(theta + h, "implicit") - solution(theta - h, "implicit")) / (2 * h)
        np.testing.assert_allclose(implicit, central, rtol=1e-6)
        np.testing.assert_allclose(unrolled, implicit, rtol=1e-6)
        # The Gauss-Newton matrix JᵀJ in place of the Hessian is measurably off here.
        x = solution(theta, "implicit")
        r = lambda p, s: exponential(p, t, s * y + s**2 * t)  # noqa: E731
        jac = jax.jacfwd(r)(x, theta)
        mixed = jax.jacfwd(lambda s: jac.T @ r(x, s))(theta)
        gauss_newton = -jnp.linalg.solve(jac.T @ jac, mixed)
        assert np.max(np.abs(gauss_newton - implicit)) > 1e-4


def test_closed_over_data_gets_the_implicit_gradient():
    with jax.enable_x64(True):
        t, y = decay_data(1, seed=4)
        t, y = jnp.asarray(t), jnp.asarray(y[0])

        @jax.jit
        def amplitude(y):
            return newton.least_squares(lambda p: exponential(p, t, y), jnp.ones(2)).params[0]

        grad = jax.jit(jax.grad(amplitude))(y)
        e = jnp.zeros_like(y).at[3].set(1e-6)
        central = (amplitude(y + e) - amplitude(y - e)) / 2e-6
        np.testing.assert_allclose(grad[3], central, rtol=1e-6)


def test_nan_residuals_give_nonfinite_with_the_last_finite_params():
    with jax.enable_x64(True):
        t = jnp.linspace(0.0, 1.0, 6)
        y = jnp.ones(6).at[2].set(jnp.nan)
        fit = jax.jit(lambda y: newton.least_squares(exponential, jnp.array([1.0, 0.5]), t, y))(y)
        assert int(fit.status) == newton.Status.NONFINITE and not bool(fit.converged)
        np.testing.assert_array_equal(fit.params, [1.0, 0.5])


def test_nan_trials_are_rejected_and_the_fit_stays_where_residuals_are_finite():
    """r = √x - 2 + … is NaN for x < 0: LM's first steps overshoot into x < 0 and are
    rejected, and it converges to the minimiser x = 4 inside the domain."""
    with jax.enable_x64(True):
        fit = jax.jit(newton.least_squares, static_argnums=0)(
            lambda x: jnp.stack([jnp.sqrt(x[0]) - 2.0, 1e-3 * x[0]]), jnp.array([0.01])
        )
        assert int(fit.status) == newton.Status.SUCCESS
        assert np.isfinite(fit.params).all() and abs(float(fit.params[0]) - 4.0) < 1e-4


def test_max_steps_and_a_start_at_the_solution():
    with jax.enable_x64(True):
        rosenbrock = PROBLEMS[0].residuals
        fit = jax.jit(newton.least_squares, static_argnums=0, static_argnames="num_steps")
        short = fit(rosenbrock, jnp.array([-1.2, 1.0]), num_steps=3)
        assert int(short.status) == newton.Status.MAX_STEPS and int(short.num_steps) == 3
        done = fit(rosenbrock, jnp.ones(2), num_steps=3)
        assert int(done.status) == newton.Status.SUCCESS and int(done.num_steps) == 0
        chex.assert_trees_all_equal(done.params, jnp.ones(2))


def test_float32_params_are_returned_in_their_dtype():
    t = jnp.linspace(0.0, 1.0, 8)
    y = 2.0 * jnp.exp(-1.5 * t)
    fit = jax.jit(newton.least_squares, static_argnums=0)(
        exponential, jnp.ones(2, jnp.bfloat16), t, y
    )
    assert fit.params.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(fit.params, np.float32), [2.0, 1.5], rtol=1e-2)
