"""Newton, Newton-CG and gradient descent as minimisers of local quadratic models."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from gradjax import newton


def quadratic(a, b):
    """f(x) = ½ xᵀAx - bᵀx, minimiser A⁻¹b."""
    return lambda x: 0.5 * x @ a @ x - b @ x


def spd(key, n, dtype=jnp.float64):
    m = jax.random.normal(key, (n, n), dtype)
    return m @ m.T / n + 0.5 * jnp.eye(n, dtype=dtype)


def logistic_loss(w, x, y, l2=1e-2):
    """Mean logistic loss with L2 regularisation; labels in {0, 1}."""
    logits = x @ w
    return jnp.mean(jnp.logaddexp(0.0, logits) - y * logits) + 0.5 * l2 * w @ w


def logistic_problem(key, n=128, d=8):
    kx, kw, kn = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n, d))
    w_true = jax.random.normal(kw, (d,))
    y = (x @ w_true + 0.5 * jax.random.normal(kn, (n,)) > 0).astype(x.dtype)
    return x, y


# ---------------------------------------------------------------- one step on a quadratic


@pytest.mark.parametrize("n", [1, 5, 20])
def test_newton_step_solves_a_strictly_convex_quadratic_in_one_step(n):
    with jax.enable_x64(True):
        a = spd(jax.random.key(n), n)
        b = jax.random.normal(jax.random.key(100 + n), (n,), jnp.float64)
        x1 = newton.newton_step(quadratic(a, b), jnp.zeros(n, jnp.float64))
        np.testing.assert_allclose(x1, jnp.linalg.solve(a, b), rtol=1e-10, atol=1e-12)


def test_newton_step_on_pytree_params():
    with jax.enable_x64(True):
        target = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.array([-1.0, 2.0])}

        def f(p):  # a coupled quadratic: the cross term makes the Hessian non-diagonal
            dw = p["w"] - target["w"]
            db = p["b"] - target["b"]
            return jnp.sum(dw**2) + 2 * jnp.sum(db**2) + jnp.sum(dw[:, 0] * db)

        start = jax.tree.map(jnp.zeros_like, target)
        out = newton.newton_step(f, start)
        assert jax.tree.structure(out) == jax.tree.structure(target)
        for got, want in zip(jax.tree.leaves(out), jax.tree.leaves(target), strict=True):
            np.testing.assert_allclose(got, want, atol=1e-12)


def test_damping_gives_the_levenberg_step():
    with jax.enable_x64(True):
        a = spd(jax.random.key(3), 4)
        b = jnp.arange(4.0)
        x1 = newton.newton_step(quadratic(a, b), jnp.zeros(4), damping=2.0)
        np.testing.assert_allclose(x1, jnp.linalg.solve(a + 2.0 * jnp.eye(4), b), rtol=1e-10)


@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_newton_cg_equals_the_dense_solve_on_spd_problems(damping):
    with jax.enable_x64(True):
        x, y = logistic_problem(jax.random.key(0))
        w0 = 0.1 * jnp.ones(x.shape[1])
        dense = newton.newton_step(logistic_loss, w0, x, y, damping=damping)
        cg = newton.newton_cg_step(logistic_loss, w0, x, y, damping=damping, tol=1e-12)
        np.testing.assert_allclose(cg, dense, rtol=1e-9, atol=1e-12)


def test_newton_cg_stops_at_negative_curvature_with_a_descent_direction():
    f = lambda p: p[0] ** 2 - p[1] ** 2  # noqa: E731  indefinite Hessian diag(2, -2)
    x0 = jnp.array([1.0, 0.5])
    x1 = newton.newton_cg_step(f, x0)
    g = jax.grad(f)(x0)
    assert float(jnp.dot(g, x1 - x0)) < 0  # a descent direction, not the saddle step


def test_newton_cg_works_on_pytrees_without_flattening():
    a = spd(jax.random.key(1), 3, jnp.float32)
    f = lambda p: quadratic(a, jnp.ones(3))(p["x"]) + jnp.sum((p["y"] - 2.0) ** 2)  # noqa: E731
    out = newton.newton_cg_step(f, {"x": jnp.zeros(3), "y": jnp.zeros((2, 2))})
    np.testing.assert_allclose(out["x"], jnp.linalg.solve(a, jnp.ones(3)), rtol=1e-4)
    np.testing.assert_allclose(out["y"], 2.0 * jnp.ones((2, 2)), rtol=1e-5)


# ---------------------------------------------------------------- gradient descent


def test_gradient_descent_is_the_argmin_of_the_isotropic_model():
    with jax.enable_x64(True):
        x, y = logistic_problem(jax.random.key(1))
        w0 = jnp.linspace(-1, 1, x.shape[1])
        eta = 0.7
        g = jax.grad(logistic_loss)(w0, x, y)
        step = newton.gradient_descent_step(logistic_loss, w0, x, y, learning_rate=eta)
        np.testing.assert_allclose(step, w0 - eta * g, rtol=1e-12)

        def model(w):  # f(w0) + gᵀ(w - w0) + ‖w - w0‖²/(2η), minimised by one Newton step
            return g @ (w - w0) + jnp.sum((w - w0) ** 2) / (2 * eta)

        np.testing.assert_allclose(newton.newton_step(model, w0), step, rtol=1e-12)


def test_gradient_descent_with_inverse_curvature_step_is_newton_in_1d():
    f = lambda x: 3.0 * (x - 2.0) ** 2 + 1.0  # noqa: E731  f'' = 6
    x0 = jnp.float32(-4.0)
    gd = newton.gradient_descent_step(f, x0, learning_rate=1 / 6)
    np.testing.assert_allclose(gd, newton.newton_step(f, x0), rtol=1e-6)
    np.testing.assert_allclose(gd, 2.0, rtol=1e-6)


# ---------------------------------------------------------------- minimize


def test_logistic_regression_matches_scipy_trust_exact():
    with jax.enable_x64(True):
        x, y = logistic_problem(jax.random.key(2), n=300, d=10)
        w0 = jnp.zeros(x.shape[1])
        ours = newton.minimize(logistic_loss, w0, x, y, tol=1e-10, num_steps=30)
        f = lambda w: float(logistic_loss(jnp.asarray(w), x, y))  # noqa: E731
        jac = lambda w: np.asarray(jax.grad(logistic_loss)(jnp.asarray(w), x, y))  # noqa: E731
        hess = lambda w: np.asarray(jax.hessian(logistic_loss)(jnp.asarray(w), x, y))  # noqa: E731
        ref = scipy.optimize.minimize(
            f, np.zeros(10), jac=jac, hess=hess, method="trust-exact", options={"gtol": 1e-10}
        )
        assert bool(ours.converged) and ref.success
        np.testing.assert_allclose(ours.params, ref.x, atol=1e-8)
        np.testing.assert_allclose(ours.value, ref.fun, rtol=1e-12)
        assert int(ours.num_steps) <= 10  # quadratic convergence: a handful of steps


@pytest.mark.parametrize("method", ["newton", "newton_cg"])
def test_rosenbrock_reaches_the_minimum_without_going_uphill(method):
    rosen = lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2  # noqa: E731
    with jax.enable_x64(True):
        out = newton.minimize(rosen, jnp.array([-1.2, 1.0]), method=method, num_steps=60, tol=1e-9)
        assert bool(out.converged)
        np.testing.assert_allclose(out.params, [1.0, 1.0], atol=1e-7)
        values = np.concatenate([[rosen(jnp.array([-1.2, 1.0]))], out.values])
        assert np.all(np.diff(values) <= 0)


def test_gradient_descent_on_rosenbrock_descends_but_crawls():
    rosen = lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2  # noqa: E731
    out = newton.minimize(
        rosen, jnp.array([-1.2, 1.0]), method="gradient_descent", learning_rate=1e-3, num_steps=200
    )
    assert np.all(np.diff(np.asarray(out.values)) <= 0)
    assert not bool(out.converged) and float(out.value) > 1e-3


@pytest.mark.parametrize("method", ["newton", "newton_cg"])
def test_saddle_is_escaped_to_a_local_minimum(method):
    # f has a saddle at (0, 0) and minima at (0, ±1); H(1, 1e-3) is indefinite.
    f = lambda p: p[0] ** 2 + p[1] ** 4 / 4 - p[1] ** 2 / 2  # noqa: E731
    x0 = jnp.array([1.0, 1e-3])
    out = newton.minimize(f, x0, method=method, num_steps=50)
    assert bool(out.converged)
    np.testing.assert_allclose(out.params, [0.0, 1.0], atol=1e-5)
    values = np.concatenate([[f(x0)], out.values])
    assert np.all(np.diff(values) <= 0)
    # The raw (unsafeguarded) Newton step heads for the saddle instead.
    assert abs(float(newton.newton_step(f, x0)[1])) < 1e-5


def test_traces_are_frozen_after_convergence():
    a = spd(jax.random.key(4), 3, jnp.float32)
    out = newton.minimize(quadratic(a, jnp.ones(3)), jnp.zeros(3), num_steps=8, tol=1e-4)
    assert out.values.shape == (8,) and out.grad_norms.shape == (8,)
    k = int(out.num_steps)
    assert 1 <= k < 8 and bool(out.converged)
    np.testing.assert_array_equal(out.values[k:], out.values[k - 1])
    assert float(out.grad_norms[k - 1]) <= 1e-4


def test_non_finite_function_is_reported_not_converged():
    f = lambda x: jnp.sum(x**2) + jnp.log(x[0] - 10.0)  # noqa: E731  NaN at the start
    out = newton.minimize(f, jnp.ones(2), num_steps=3)
    assert not bool(out.converged)


# ---------------------------------------------------------------- transformations


def batched_problems(num):
    keys = jax.random.split(jax.random.key(5), num)
    return jax.vmap(lambda k: logistic_problem(k, n=64, d=4))(keys)


@pytest.mark.parametrize("method", ["newton", "newton_cg"])
def test_vmap_over_problems_equals_a_loop(method):
    xs, ys = batched_problems(4)

    def solve(x, y):
        return newton.minimize(logistic_loss, jnp.zeros(4), x, y, method=method, num_steps=12)

    batched = jax.vmap(solve)(xs, ys)
    solve_one = jax.jit(solve)  # compiled once for the loop (jit == eager is tested below)
    for i in range(4):
        single = solve_one(xs[i], ys[i])
        np.testing.assert_allclose(batched.params[i], single.params, rtol=1e-5, atol=1e-6)
        assert int(batched.num_steps[i]) == int(single.num_steps)


def test_jit_equals_eager_and_does_not_retrace():
    xs, ys = batched_problems(2)
    traces = []

    def solve(x, y):
        traces.append(1)
        return newton.minimize(logistic_loss, jnp.zeros(4), x, y, num_steps=10)

    jitted = jax.jit(solve)
    first = jitted(xs[0], ys[0])
    second = jitted(xs[1], ys[1])
    assert len(traces) == 1
    eager = solve(xs[1], ys[1])
    np.testing.assert_allclose(second.params, eager.params, rtol=1e-5, atol=1e-6)
    assert not np.allclose(first.params, second.params)


def test_gradient_through_minimize_matches_finite_differences():
    """d/dλ of the ridge solution, through the unrolled Newton iterations."""
    with jax.enable_x64(True):
        a = jax.random.normal(jax.random.key(6), (20, 3))
        b = jax.random.normal(jax.random.key(7), (20,))

        def ridge(w, lam):
            return jnp.sum((a @ w - b) ** 2) + lam * jnp.sum(w**2)

        @jax.jit
        def outcome(lam):
            return jnp.sum(newton.minimize(ridge, jnp.zeros(3), lam, num_steps=3).params ** 2)

        lam, h = 0.7, 1e-5
        fd = (outcome(lam + h) - outcome(lam - h)) / (2 * h)
        grad = jax.jit(jax.grad(outcome))(lam)
        np.testing.assert_allclose(grad, fd, rtol=1e-6)
        # and against the closed form w(λ) = (AᵀA + λI)⁻¹Aᵀb
        closed = lambda lam: jnp.sum(  # noqa: E731
            jnp.linalg.solve(a.T @ a + lam * jnp.eye(3), a.T @ b) ** 2
        )
        np.testing.assert_allclose(grad, jax.grad(closed)(lam), rtol=1e-8)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: newton.newton_step(lambda x: x**2, jnp.ones(3)), ValueError, "scalar"),
        (lambda: newton.minimize(lambda x: x, jnp.ones(2)), ValueError, "scalar"),
        (lambda: newton.newton_step(lambda x: jnp.sum(x), jnp.ones(3, int)), TypeError, "params"),
        (lambda: newton.newton_step(lambda x: 0.0, {}), ValueError, "params"),
        (lambda: newton.newton_step("f", jnp.ones(2)), TypeError, "fun"),
        (lambda: newton.minimize(jnp.sum, jnp.ones(2), method="bfgs"), ValueError, "method"),
        (lambda: newton.newton_step(jnp.sum, jnp.ones(2), damping=-1.0), ValueError, "damping"),
        (lambda: newton.minimize(jnp.sum, jnp.ones(2), tol=-1.0), ValueError, "tol"),
        (lambda: newton.minimize(jnp.sum, jnp.ones(2), num_steps=-1), ValueError, "num_steps"),
        (
            lambda: newton.minimize(jnp.sum, jnp.ones(2), method="gradient_descent"),
            TypeError,
            "learning_rate",
        ),
        (
            lambda: newton.gradient_descent_step(jnp.sum, jnp.ones(2), learning_rate=0.0),
            ValueError,
            "learning_rate",
        ),
        (lambda: newton.minimize(jnp.sum, jnp.ones(2), learning_rate=0.1), TypeError, "options"),
        (lambda: newton.newton_cg_step(jnp.sum, jnp.ones(2), maxiter=0), ValueError, "maxiter"),
        (
            lambda: newton.newton_step(lambda x, y: jnp.sum(x @ y), jnp.ones(2), jnp.ones(3)),
            TypeError,
            "dot_general",
        ),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_python_scalars_are_accepted_as_params():
    f = lambda x: 3.0 * (x - 2.0) ** 2  # noqa: E731
    np.testing.assert_allclose(newton.newton_step(f, 10.0), 2.0, rtol=1e-6)
    np.testing.assert_allclose(
        newton.gradient_descent_step(f, 10.0, learning_rate=1 / 6), 2.0, rtol=1e-6
    )
