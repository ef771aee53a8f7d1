"""Box constraints: projected Levenberg-Marquardt / Gauss-Newton against SciPy, in the box."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from gradjax import newton


def exponential(p, t, y):
    return p[0] * jnp.exp(-p[1] * t) - y


T = np.linspace(0.0, 3.0, 20)
Y = 2.5 * np.exp(-1.3 * T) + 0.05 * np.random.default_rng(0).standard_normal(T.size)
# The box binds the decay rate (unconstrained optimum k ≈ 1.3) and leaves a free.
LOWER, UPPER = np.array([0.0, 0.2]), np.array([10.0, 0.9])


def cost(p):
    r = p[0] * np.exp(-p[1] * T) - Y
    return 0.5 * r @ r


def cost_grad(p):
    e = np.exp(-p[1] * T)
    r = p[0] * e - Y
    return np.array([r @ e, -(r @ (p[0] * T * e))])


@pytest.mark.parametrize("method", ["levenberg_marquardt", "gauss_newton"])
def test_bounded_fit_equals_scipy_trf_and_lbfgsb_on_the_bound(method):
    with jax.enable_x64(True):
        fit = jax.jit(
            lambda y: newton.least_squares(
                exponential,
                jnp.array([1.0, 0.5]),
                T,
                y,
                method=method,
                bounds=(LOWER, UPPER),
            )
        )(Y)
        trf = scipy.optimize.least_squares(
            lambda p: p[0] * np.exp(-p[1] * T) - Y,
            np.array([1.0, 0.5]),
            method="trf",
            bounds=(LOWER, UPPER),
            xtol=1e-15,
            ftol=1e-15,
            gtol=1e-15,
        )
        lbfgsb = scipy.optimize.minimize(
            cost,
            np.array([1.0, 0.5]),
            jac=cost_grad,
            method="L-BFGS-B",
            bounds=list(zip(LOWER, UPPER, strict=True)),
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 1000},
        )
        assert int(fit.status) == newton.Status.SUCCESS
        assert float(fit.params[1]) == UPPER[1]  # exactly on the bound
        np.testing.assert_allclose(fit.params, trf.x, atol=1e-6)
        np.testing.assert_allclose(fit.params, lbfgsb.x, atol=1e-6)
        # SUCCESS by the projected gradient (or the rounding test, at ‖g‖ ~ 1e-8 here):
        # the bound coordinate's gradient is not zero.
        assert float(fit.grad_norms[-1]) <= 1e-7
        assert abs(cost_grad(np.asarray(fit.params))[1]) > 1e-2


def test_iterates_never_leave_the_box_and_a_start_outside_is_projected():
    seen = []

    def residuals(p, t, y):
        jax.debug.callback(lambda x: seen.append(np.asarray(x)), p)
        return exponential(p, t, y)

    with jax.enable_x64(True):
        fit = jax.jit(
            lambda y: newton.least_squares(
                residuals, jnp.array([20.0, 0.0]), T, y, bounds=(LOWER, UPPER)
            )
        )(Y)
        jax.block_until_ready(fit)
    points = np.stack(seen)
    assert len(points) > 3
    assert np.all(points >= LOWER) and np.all(points <= UPPER)
    assert int(fit.status) == newton.Status.SUCCESS


def test_infinite_bounds_equal_the_unbounded_fit_and_pytree_bounds():
    with jax.enable_x64(True):
        params = {"a": jnp.array(1.0), "k": jnp.array(0.5)}

        def tree_residuals(p, t, y):
            return p["a"] * jnp.exp(-p["k"] * t) - y

        solve = jax.jit(
            lambda y, lower, upper: newton.least_squares(
                tree_residuals, params, T, y, bounds=(lower, upper)
            )
        )
        free = solve(Y, {"a": -jnp.inf, "k": -jnp.inf}, {"a": jnp.inf, "k": jnp.inf})
        plain = jax.jit(lambda y: newton.least_squares(tree_residuals, params, T, y))(Y)
        np.testing.assert_allclose(free.params["k"], plain.params["k"], atol=1e-10)
        # Only an upper bound on k: the same optimum as the two-sided box.
        boxed = solve(Y, {"a": -jnp.inf, "k": -jnp.inf}, {"a": jnp.inf, "k": 0.9})
        assert float(boxed.params["k"]) == 0.9


def test_implicit_gradient_through_the_active_set():
    """d params / d θ for data θ·Y: the bound coordinate gets zero, the free one equals
    central differences, and the unrolled gradient agrees."""
    with jax.enable_x64(True):

        @functools.partial(jax.jit, static_argnums=1)
        def solution(theta, adjoint):
            return newton.least_squares(
                exponential,
                jnp.array([1.0, 0.5]),
                T,
                theta * Y + theta**2 * T,
                bounds=(LOWER, UPPER),
                adjoint=adjoint,
                num_steps=60,
            ).params

        theta, h = 1.1, 1e-5
        implicit = jax.jit(jax.jacobian(solution), static_argnums=1)(theta, "implicit")
        unrolled = jax.jit(jax.jacobian(solution), static_argnums=1)(theta, "unrolled")
        central = (solution(theta + h, "implicit") - solution(theta - h, "implicit")) / (2 * h)
        assert float(implicit[1]) == 0.0 and float(central[1]) == 0.0
        np.testing.assert_allclose(implicit, central, rtol=1e-6)
        np.testing.assert_allclose(unrolled, implicit, rtol=1e-6, atol=1e-12)


def logistic(w, x, y):
    z = x @ w
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 5e-3 * w @ w


def logistic_data(n=64, d=5):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, d))
    y = (x @ np.array([3.0, -2.0, 1.0, 0.5, -0.3]) + 0.3 * rng.standard_normal(n) > 0) * 1.0
    return x, y


@pytest.mark.parametrize("method", ["newton", "newton_cg"])
def test_bounded_minimize_equals_lbfgsb_and_its_implicit_gradient(method):
    """Box [-1, 1]: the two large weights end on their bounds; SciPy's L-BFGS-B agrees,
    and d w*/d θ (data scaled by θ) is central differences, zero on the bound ones."""
    with jax.enable_x64(True):
        x, y = logistic_data()
        lower, upper = -np.ones(5), np.ones(5)

        @jax.jit
        def solve(theta):
            return newton.minimize(
                logistic,
                jnp.zeros(5),
                theta * x,
                y,
                method=method,
                tol=1e-10,
                bounds=(lower, upper),
            )

        fit = solve(1.0)
        f = jax.jit(logistic)
        g = jax.jit(jax.grad(logistic))
        reference = scipy.optimize.minimize(
            lambda w: float(f(w, x, y)),
            np.zeros(5),
            jac=lambda w: np.asarray(g(w, x, y)),
            method="L-BFGS-B",
            bounds=list(zip(lower, upper, strict=True)),
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 1000},
        )
        assert int(fit.status) == newton.Status.SUCCESS
        np.testing.assert_allclose(fit.params, reference.x, atol=1e-6)
        on_bound = np.abs(np.asarray(fit.params)) == 1.0
        assert on_bound[:2].all() and not on_bound[2:].any()
        jac = jax.jit(jax.jacobian(lambda t: solve(t).params))(1.0)
        h = 1e-5
        central = (solve(1.0 + h).params - solve(1.0 - h).params) / (2 * h)
        np.testing.assert_allclose(jac, central, rtol=1e-6, atol=1e-9)
        assert np.all(np.asarray(jac)[:2] == 0)
