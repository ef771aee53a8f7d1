"""Newton, Newton-CG and gradient descent as minimisers of local quadratic models."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from _edge_functions import wrong_sign_square

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
        chex.assert_trees_all_close(out, target, atol=1e-12)  # same structure, same leaves


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
        cg = newton.newton_cg_step(logistic_loss, w0, x, y, damping=damping, cg_tol=1e-12)
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

    batched = jax.jit(jax.vmap(solve))(xs, ys)
    solve_one = jax.jit(solve)  # compiled once for the loop (jit == eager is tested below)
    for i in range(4):
        single = solve_one(xs[i], ys[i])
        np.testing.assert_allclose(batched.params[i], single.params, rtol=1e-5, atol=1e-6)
        assert int(batched.num_steps[i]) == int(single.num_steps)


class JitEqualsEagerTest(chex.TestCase):
    """minimize with and without jit meets the same oracle; jitted, two problems trace once."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_jit_equals_eager_and_does_not_retrace(self):
        xs, ys = batched_problems(2)
        chex.clear_trace_counter()

        @self.variant
        @chex.assert_max_traces(n=1)
        def solve(x, y):
            return newton.minimize(logistic_loss, jnp.zeros(4), x, y, num_steps=10)

        first, second = solve(xs[0], ys[0]), solve(xs[1], ys[1])
        for out, x, y in ((first, xs[0], ys[0]), (second, xs[1], ys[1])):
            # The oracle: the loss is μ-strongly convex (μ >= l2 = 1e-2), so ‖∇f‖ <= 1e-6 puts
            # both variants within ‖∇f‖/μ = 1e-4 of the one minimiser.
            assert bool(out.converged)
            np.testing.assert_allclose(jax.grad(logistic_loss)(out.params, x, y), 0, atol=1e-6)
        assert not np.allclose(first.params, second.params)


# ---------------------------------------------------------------- saddles and status codes

METHODS = ["newton", "newton_cg"]


def saddle(p):
    """x² + (y² − 1)²: a saddle at (0, 0), minima at (0, ±1)."""
    return p[0] ** 2 + (p[1] ** 2 - 1) ** 2


@pytest.mark.parametrize("method", [*METHODS, "gradient_descent"])
@pytest.mark.parametrize("start", [(1.0, 0.0), (0.0, 0.0)])
def test_a_saddle_is_left_even_from_a_zero_gradient(method, start):
    options = {"learning_rate": 0.1, "num_steps": 400} if method == "gradient_descent" else {}
    out = newton.minimize(saddle, jnp.array(start), method=method, **options)
    assert int(out.status) == newton.Status.SUCCESS and bool(out.converged)
    np.testing.assert_allclose(jnp.abs(out.params), [0.0, 1.0], atol=1e-5)
    values = np.concatenate([[saddle(jnp.array(start))], out.values])
    assert np.all(np.diff(values) <= 0)


@pytest.mark.parametrize("method", METHODS)
def test_a_maximum_is_left_for_the_unit_sphere(method):
    # (‖x‖² − 1)² has a maximum at 0 (g = 0, H = −4I) and its minima on the unit sphere.
    out = newton.minimize(lambda x: (x @ x - 1) ** 2, jnp.zeros(3), method=method)
    assert bool(out.converged)
    np.testing.assert_allclose(jnp.linalg.norm(out.params), 1.0, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_the_sqrt_example_returns_finite_params_not_nan(method):
    # f decreases towards x = 1, where f' = −∞; beyond, NaN. Newton must not step into NaN.
    f = lambda x: jnp.sum(jnp.sqrt(1 - x) - 2 * x)  # noqa: E731
    out = newton.minimize(f, jnp.zeros(1), method=method)
    assert int(out.status) in (newton.Status.NO_DESCENT, newton.Status.NONFINITE)
    assert not bool(out.converged)
    assert np.all(np.isfinite(out.params)) and float(out.params[0]) < 1
    assert np.isfinite(float(out.value)) and float(out.value) < float(f(jnp.zeros(1)))


@jax.custom_jvp
def nan_gradient_past(x):
    """(x − 2)², whose gradient is NaN for x > 1.2 while the value stays finite."""
    return jnp.sum((x - 2.0) ** 2)


@nan_gradient_past.defjvp
def _nan_gradient_past_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    slope = jnp.where(x > 1.2, jnp.nan, 2 * (x - 2.0))
    return nan_gradient_past(x), jnp.sum(slope * t)


def test_nonfinite_gradient_stops_with_the_last_finite_iterate():
    # From 0 the Newton step to 2 has a NaN gradient; backtracking accepts x = 1 (finite);
    # from 1 the accepted x = 1.5 has a NaN gradient again: stop there and return x = 1.
    out = newton.minimize(nan_gradient_past, jnp.zeros(1))
    assert int(out.status) == newton.Status.NONFINITE
    np.testing.assert_allclose(out.params, [1.0], rtol=1e-6)
    np.testing.assert_allclose(out.value, 1.0, rtol=1e-6)
    assert int(out.num_steps) == 2


def test_nonfinite_start_and_max_steps():
    f = lambda x: jnp.sum(x**2) + jnp.log(x[0] - 10.0)  # noqa: E731  NaN at the start
    out = newton.minimize(f, jnp.ones(2), num_steps=3)
    assert int(out.status) == newton.Status.NONFINITE and int(out.num_steps) == 0
    np.testing.assert_array_equal(out.params, jnp.ones(2))
    rosen = lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2  # noqa: E731
    out = newton.minimize(rosen, jnp.array([-1.2, 1.0]), num_steps=3)
    assert int(out.status) == newton.Status.MAX_STEPS and not bool(out.converged)
    assert int(out.num_steps) == 3


def test_status_is_an_int_enum_and_converged_is_success():
    assert [s.name for s in newton.Status] == ["SUCCESS", "MAX_STEPS", "NONFINITE", "NO_DESCENT"]
    out = newton.minimize(saddle, jnp.array([1.0, 0.0]))
    assert out.status.dtype == jnp.int32 and bool(out.converged) == (out.status == 0)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_params_are_solved_in_float32(dtype):
    a = spd(jax.random.key(8), 3, jnp.float32)
    f = quadratic(a, jnp.ones(3))
    out = newton.minimize(f, jnp.zeros(3, dtype))
    assert out.params.dtype == dtype and bool(out.converged)
    np.testing.assert_allclose(
        np.asarray(out.params, np.float32), jnp.linalg.solve(a, jnp.ones(3)), rtol=1e-2
    )


def test_tight_tolerance_is_reached_below_the_armijo_floor():
    # An Armijo test on f resolves ‖g‖ only down to ~√(ε|f|/λ) ≈ 1e-8 here; the
    # gradient-norm acceptance near the solution reaches 1e-12.
    with jax.enable_x64(True):
        x, y = logistic_problem(jax.random.key(9), n=192, d=12)
        out = newton.minimize(logistic_loss, jnp.zeros(12), x, y, tol=1e-12)
        assert bool(out.converged) and float(out.grad_norms[int(out.num_steps) - 1]) <= 1e-12


# ---------------------------------------------------------------- early exit


def test_a_vmapped_batch_stops_when_every_problem_is_done():
    """The loop body runs as many times at num_steps=20 as at 400 (counted on the host)."""
    xs, ys = batched_problems(4)

    def evaluations(num_steps):
        calls = []

        def loss(w, x, y):
            jax.debug.callback(lambda: calls.append(1))
            return logistic_loss(w, x, y)

        solve = jax.vmap(
            lambda x, y: newton.minimize(loss, jnp.zeros(4), x, y, num_steps=num_steps)
        )
        out = jax.block_until_ready(jax.jit(solve)(xs, ys))
        return len(calls), out

    calls_20, out_20 = evaluations(20)
    calls_400, out_400 = evaluations(400)
    assert calls_20 == calls_400
    assert np.all(np.asarray(out_20.status) == newton.Status.SUCCESS)
    chex.assert_trees_all_close(out_20.params, out_400.params)
    assert out_400.values.shape == (4, 400)
    steps = int(np.max(out_400.num_steps))
    flat = np.broadcast_to(out_400.values[:, steps - 1 : steps], (4, 400 - steps))
    np.testing.assert_array_equal(out_400.values[:, steps:], flat)


# ---------------------------------------------------------------- implicit gradients


def ridge_problem():
    a = jax.random.normal(jax.random.key(6), (30, 4), jnp.float64)
    b = jax.random.normal(jax.random.key(7), (30,), jnp.float64)

    def ridge(w, lam):  # ½‖Aw − b‖²/n + ½λ‖w‖²: w* = (AᵀA/n + λI)⁻¹Aᵀb/n
        return 0.5 * jnp.mean((a @ w - b) ** 2) + 0.5 * lam * w @ w

    return a, b, ridge


@pytest.mark.parametrize(
    "method, adjoint",
    [
        ("newton", "implicit"),
        ("newton_cg", "implicit"),
        ("newton_cg", "unrolled"),  # through the scan form of CG
        ("gradient_descent", "implicit"),
    ],
)
def test_ridge_solution_derivative_matches_the_closed_form(method, adjoint):
    with jax.enable_x64(True):
        a, b, ridge = ridge_problem()
        options = {"learning_rate": 1.0} if method == "gradient_descent" else {}

        def solution(lam):
            out = newton.minimize(
                ridge,
                jnp.zeros(4),
                lam,
                method=method,
                adjoint=adjoint,
                tol=1e-12,
                num_steps=300,
                **options,
            )
            return out.params, out.params

        lam = 0.3
        gram = a.T @ a / 30 + lam * jnp.eye(4)
        w = jnp.linalg.solve(gram, a.T @ b / 30)
        jacobian, params = jax.jit(jax.jacrev(solution, has_aux=True))(lam)
        np.testing.assert_allclose(params, w, rtol=1e-9)
        np.testing.assert_allclose(jacobian, -jnp.linalg.solve(gram, w), rtol=1e-7)


@pytest.mark.parametrize("method", METHODS)
def test_hypergradient_matches_central_differences_and_the_unrolled_one(method):
    """d/dλ of a validation loss at the L2-regularised logistic solution (float64)."""
    with jax.enable_x64(True):
        x, y = logistic_problem(jax.random.key(10), n=96, d=6)
        xv, yv = logistic_problem(jax.random.key(11), n=64, d=6)

        def validation(log_lam, adjoint):
            out = newton.minimize(
                logistic_loss,
                jnp.zeros(6),
                x,
                y,
                jnp.exp(log_lam),
                method=method,
                tol=1e-11,
                adjoint=adjoint,
            )
            return logistic_loss(out.params, xv, yv, 0.0)

        implicit = jax.jit(jax.value_and_grad(lambda t: validation(t, "implicit")))
        h = 1e-4
        fd = (implicit(-1.0 + h)[0] - implicit(-1.0 - h)[0]) / (2 * h)
        _, grad = implicit(-1.0)
        np.testing.assert_allclose(grad, fd, rtol=1e-6)
        unrolled = jax.jit(jax.grad(lambda t: validation(t, "unrolled")))(-1.0)
        np.testing.assert_allclose(grad, unrolled, rtol=1e-8)


def test_gradients_flow_to_closed_over_values_and_not_to_the_start():
    with jax.enable_x64(True):
        a, b, ridge = ridge_problem()

        def solution_norm(lam, w0):
            out = newton.minimize(lambda w: ridge(w, lam), w0, tol=1e-12)
            return jnp.sum(out.params**2)

        def closed_form(lam):
            return jnp.sum(jnp.linalg.solve(a.T @ a / 30 + lam * jnp.eye(4), a.T @ b / 30) ** 2)

        d_lam, d_w0 = jax.grad(solution_norm, argnums=(0, 1))(0.5, jnp.ones(4))
        np.testing.assert_allclose(d_lam, jax.grad(closed_form)(0.5), rtol=1e-8)
        np.testing.assert_array_equal(d_w0, jnp.zeros(4))


def test_value_gradient_is_the_envelope_theorem():
    # d/dλ min_w f(w, λ) = ∂f/∂λ at w*: here ½‖w*‖².
    with jax.enable_x64(True):
        _, _, ridge = ridge_problem()
        value = lambda lam: newton.minimize(ridge, jnp.zeros(4), lam, tol=1e-12).value  # noqa: E731
        w = newton.minimize(ridge, jnp.zeros(4), 0.4, tol=1e-12).params
        np.testing.assert_allclose(jax.grad(value)(0.4), 0.5 * w @ w, rtol=1e-9)


def implicit_gradient_memory(num_steps, adjoint):
    def outer(lam, x, y):
        out = newton.minimize(
            logistic_loss,
            jnp.zeros(x.shape[1]),
            x,
            y,
            lam,
            num_steps=num_steps,
            tol=0.0,
            adjoint=adjoint,
        )
        return jnp.sum(out.params)

    x, y = logistic_problem(jax.random.key(12), n=64, d=40)
    compiled = jax.jit(jax.grad(outer)).lower(0.1, x, y).compile()
    return compiled.memory_analysis().temp_size_in_bytes


def test_implicit_gradient_memory_does_not_grow_with_num_steps():
    # tol=0 runs every step. The unrolled adjoint stores per-step residuals (each step
    # keeps at least a 40×40 Hessian factor); the implicit one only the solution, so
    # its temporaries differ only by the (num_steps,) traces.
    implicit_20 = implicit_gradient_memory(20, "implicit")
    implicit_100 = implicit_gradient_memory(100, "implicit")
    assert implicit_100 - implicit_20 <= 16 * 80 * 4 + 4096
    unrolled_20 = implicit_gradient_memory(20, "unrolled")
    unrolled_100 = implicit_gradient_memory(100, "unrolled")
    assert unrolled_100 - unrolled_20 >= 80 * 40 * 40 * 4


def test_python_scalars_are_accepted_as_params():
    f = lambda x: 3.0 * (x - 2.0) ** 2  # noqa: E731
    np.testing.assert_allclose(newton.newton_step(f, 10.0), 2.0, rtol=1e-6)
    np.testing.assert_allclose(
        newton.gradient_descent_step(f, 10.0, learning_rate=1 / 6), 2.0, rtol=1e-6
    )


# ---------------------------------------------------------------- float64 edge cases (issue 29)


@pytest.mark.parametrize("method", [*METHODS, "gradient_descent"])
def test_float64_constant_and_wrong_sign_gradient_keep_their_outcomes(method):
    options = {"learning_rate": 0.1} if method == "gradient_descent" else {}
    with jax.enable_x64(True):
        x0 = jnp.array([1.0, -2.0])
        const = newton.minimize(lambda p: jnp.float64(1.0), x0, method=method, **options)
        assert int(const.status) == newton.Status.SUCCESS and int(const.num_steps) == 0
        np.testing.assert_array_equal(const.params, x0)
        wrong = newton.minimize(wrong_sign_square, x0, method=method, **options)
        assert int(wrong.status) == newton.Status.NO_DESCENT and int(wrong.num_steps) == 1
        np.testing.assert_array_equal(wrong.params, x0)


def test_line_search_constants_are_options():
    # From 0 the Newton step to 2 has a NaN gradient (nan_gradient_past): without
    # backtracking the first step is refused; with β = 0.25 the accepted point is 0.5.
    none = newton.minimize(nan_gradient_past, jnp.zeros(1), max_backtracks=0)
    assert int(none.status) == newton.Status.NO_DESCENT and int(none.num_steps) == 1
    quarter = newton.minimize(nan_gradient_past, jnp.zeros(1), backtrack=0.25, num_steps=1)
    np.testing.assert_allclose(quarter.params, [0.5], rtol=1e-6)
