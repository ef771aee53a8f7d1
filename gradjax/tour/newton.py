"""Tour: Newton and gradient descent as minimisers of local quadratic models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from gradjax import newton
from gradjax.datasets import load_digits


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def logistic_loss(w, x, y, l2):
    z = x @ w
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w @ w


def step_path(step, num_steps):
    """Iterates of a raw step function (no safeguards) from (-1.2, 1)."""
    step = jax.jit(step)
    points = [jnp.array([-1.2, 1.0])]
    for _ in range(num_steps):
        points.append(step(points[-1]))
    return np.stack(points)


def run(report) -> None:
    sec = report.section("Newton and gradient descent: minimise a local quadratic model")
    sec.text(
        "At x both methods minimise m(x + Δ) = f(x) + gᵀΔ + ½ΔᵀBΔ. Newton uses the "
        "curvature B = H (the tangent paraboloid, second-order accurate but possibly "
        "indefinite); gradient descent uses B = I/η (an isotropic paraboloid, always convex), "
        "whose minimiser is Δ = -ηg. `gradjax.newton.minimize` factors H once per step; "
        "where H is not positive definite it steps on the eigenvalue-magnitude model and "
        "along the most negative curvature direction, and an Armijo line search accepts "
        "only decreasing steps, so the values never increase and saddles are left. The "
        "loop stops as soon as every problem of a vmapped batch is done, reports a "
        "`Status` (SUCCESS, MAX_STEPS, NONFINITE, NO_DESCENT), and differentiates its "
        "solution implicitly through the optimality condition."
    )

    runs = {
        "Newton": newton.minimize(rosenbrock, jnp.array([-1.2, 1.0]), num_steps=60, tol=1e-6),
        "Newton-CG": newton.minimize(
            rosenbrock, jnp.array([-1.2, 1.0]), method="newton_cg", num_steps=60, tol=1e-6
        ),
        "damped Newton (damping=10)": newton.minimize(
            rosenbrock, jnp.array([-1.2, 1.0]), num_steps=60, tol=1e-6, damping=10.0
        ),
        "gradient descent (η=1e-3)": newton.minimize(
            rosenbrock,
            jnp.array([-1.2, 1.0]),
            method="gradient_descent",
            learning_rate=1e-3,
            num_steps=60,
            tol=1e-6,
        ),
    }
    fig, (ax_path, ax_value) = plt.subplots(1, 2, figsize=(11, 4))
    grid = np.meshgrid(np.linspace(-1.6, 1.4, 200), np.linspace(-0.6, 1.6, 200))
    z = (1 - grid[0]) ** 2 + 100 * (grid[1] - grid[0] ** 2) ** 2
    ax_path.contour(grid[0], grid[1], np.log10(z + 1e-3), levels=25, cmap="Greys", linewidths=0.6)
    paths = {
        "newton_step": lambda x: newton.newton_step(rosenbrock, x),
        "newton_step(damping=10)": lambda x: newton.newton_step(rosenbrock, x, damping=10.0),
        "gradient_descent_step(η=1e-3)": lambda x: newton.gradient_descent_step(
            rosenbrock, x, learning_rate=1e-3
        ),
    }
    for name, step in paths.items():
        pts = step_path(step, 25)
        ax_path.plot(pts[:, 0], pts[:, 1], ".-", ms=3, lw=1, label=name)
    styles = ["o-", "x--", "s:", "-"]
    for (name, result), style in zip(runs.items(), styles, strict=True):
        ax_value.semilogy(
            np.arange(1, 61),
            np.maximum(np.asarray(result.values), 1e-16),
            style,
            ms=4,
            markevery=3,
            label=name,
        )
    ax_path.plot([1], [1], "k*", ms=12)
    ax_path.set(
        title="25 raw steps from (-1.2, 1)",
        xlabel="x",
        ylabel="y",
        xlim=(-1.6, 1.4),
        ylim=(-0.6, 1.6),
    )
    ax_path.legend(fontsize=8)
    ax_value.set(title="minimize: f per step (frozen once ‖g‖ ≤ 1e-6)", xlabel="step", ylabel="f")
    ax_value.legend(fontsize=8)
    sec.figure(
        fig,
        "newton_rosenbrock",
        "Rosenbrock. Left: iterates of the raw step "
        "functions (the plain Newton step jumps, the damped one bends towards gradient "
        "descent, which crawls along the valley). Right: the safeguarded minimize, "
        "objective per step.",
    )
    rows = [
        [name, int(r.num_steps), newton.Status(int(r.status)).name, float(r.value)]
        for name, r in runs.items()
    ]
    sec.table(["method", "steps taken", "status", "f at the end"], rows)
    saddle_escape(sec, report)
    newton_steps = int(runs["Newton"].num_steps)
    report.add_summary(
        "Newton on Rosenbrock",
        f"converged in {newton_steps} steps to f = {float(runs['Newton'].value):.1e}; "
        f"GD after 60 steps: f = {float(runs['gradient descent (η=1e-3)'].value):.2f}",
        "minimiser (1, 1); values never increase",
    )

    # Logistic regression on real data: scikit-learn digits, 3 against 5.
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits()
    keep = (y == 3) | (y == 5)
    x, y = x[keep], (y[keep] == 5).astype(np.float32)
    l2 = 1e-2
    solve = jax.jit(
        lambda x, y: newton.minimize(
            logistic_loss, jnp.zeros(x.shape[1]), x, y, l2, num_steps=20, tol=1e-5
        )
    )
    ours = solve(x, y)
    gd = newton.minimize(
        logistic_loss,
        jnp.zeros(x.shape[1]),
        x,
        y,
        l2,
        method="gradient_descent",
        learning_rate=1.0,
        num_steps=20,
        tol=1e-5,
    )
    # Same objective: scikit-learn minimises C·Σ loss + ½‖w‖², so C = 1/(l2·n).
    ref = LogisticRegression(
        C=1 / (l2 * len(y)), fit_intercept=False, tol=1e-10, max_iter=10_000
    ).fit(x, y)
    diff = float(np.max(np.abs(np.asarray(ours.params) - ref.coef_[0])))
    accuracy = float(np.mean((x @ np.asarray(ours.params) > 0) == (y > 0)))
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.semilogy(np.arange(1, 21), np.asarray(ours.grad_norms), "o-", label="Newton")
    ax.semilogy(np.arange(1, 21), np.asarray(gd.grad_norms), "s-", label="gradient descent η=1")
    ax.set(title="logistic regression, digits 3 vs 5", xlabel="step", ylabel="‖g‖")
    ax.legend()
    sec.figure(
        fig,
        "newton_logistic",
        "Gradient norm per step: Newton converges quadratically, gradient descent linearly.",
    )
    sec.text(
        f"L2-regularised logistic regression on the {len(y)} scikit-learn digits labelled 3 or "
        f"5 (64 pixels, λ = {l2}): Newton reaches ‖g‖ ≤ 1e-5 in {int(ours.num_steps)} steps; "
        f"its weights differ from scikit-learn's LogisticRegression on the same objective by "
        f"at most {diff:.1e}; training accuracy {accuracy:.1%}."
    )
    report.add_summary(
        "Newton, logistic regression (digits 3 vs 5)",
        f"{int(ours.num_steps)} steps, max |w - w_sklearn| = {diff:.1e}",
        "scikit-learn LogisticRegression, same objective",
    )
    tune_l2_by_implicit_gradients(sec, report, x, y)
    least_squares_fits(sec, report)


def saddle(p):
    """x² + (y² − 1)²: a saddle at (0, 0), minima at (0, ±1)."""
    return p[0] ** 2 + (p[1] ** 2 - 1) ** 2


def saddle_escape(sec, report) -> None:
    """Iterates of minimize from (1, 0) and from the saddle itself, on the contours."""
    one_step = jax.jit(lambda p: newton.minimize(saddle, p, num_steps=1).params)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    grid = np.meshgrid(np.linspace(-1.3, 1.3, 200), np.linspace(-1.5, 1.5, 200))
    ax.contour(grid[0], grid[1], np.log10(saddle(grid) + 1e-2), levels=20, cmap="Greys")
    rows = []
    for start, style in [((1.0, 0.0), "o-"), ((0.0, 0.0), "s--"), ((-1.2, 0.3), "^:")]:
        points = [jnp.array(start)]
        for _ in range(8):
            points.append(one_step(points[-1]))
        pts = np.stack(points)
        ax.plot(pts[:, 0], pts[:, 1], style, ms=5, label=f"from {start}")
        final = newton.minimize(saddle, jnp.array(start))
        rows.append(
            [
                f"({start[0]:g}, {start[1]:g})",
                newton.Status(int(final.status)).name,
                "({:.4g}, {:.4g})".format(*(np.round(np.asarray(final.params), 4) + 0.0)),
            ]
        )
    ax.plot([0, 0], [-1, 1], "k*", ms=12)
    ax.set(title="x² + (y² − 1)²: minimize leaves the saddle", xlabel="x", ylabel="y")
    ax.legend(fontsize=8)
    sec.figure(
        fig,
        "newton_saddle",
        "Newton iterates on x² + (y² − 1)². At (1, 0) the Hessian diag(2, −4) is indefinite and "
        "at (0, 0) the gradient is zero: the step along the negative-curvature eigenvector "
        "reaches a minimum (0, ±1) (stars) in one step; the raw Newton step would go to the "
        "saddle.",
    )
    sec.table(["start", "status", "end"], rows)
    report.add_summary(
        "Newton, saddle escape",
        ", ".join(f"{r[0]} → {r[2]}" for r in rows[:2]),
        "minima (0, ±1); SUCCESS certifies no negative curvature",
    )


def tune_l2_by_implicit_gradients(sec, report, x, y, outer_steps=25) -> None:
    """Gradient descent on the validation loss w.r.t. log λ, through the inner solve."""
    import optax

    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train, val = order[: len(y) // 2], order[len(y) // 2 :]

    def validation_loss(log_lam):
        inner = newton.minimize(
            logistic_loss, jnp.zeros(x.shape[1]), x[train], y[train], jnp.exp(log_lam), tol=1e-6
        )
        return logistic_loss(inner.params, x[val], y[val], 0.0)

    step = jax.jit(jax.value_and_grad(validation_loss))
    optimizer = optax.adam(0.3)
    log_lam = jnp.float32(np.log(1.0))
    state = optimizer.init(log_lam)
    losses, lams = [], []
    for _ in range(outer_steps):
        loss, grad = step(log_lam)
        losses.append(float(loss))
        lams.append(float(jnp.exp(log_lam)))
        updates, state = optimizer.update(grad, state)
        log_lam = optax.apply_updates(log_lam, updates)
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(np.arange(outer_steps), losses, "o-", ms=4, label="validation loss")
    ax.set(xlabel="outer step (Adam on log λ)", ylabel="validation loss")
    twin = ax.twinx()
    twin.semilogy(np.arange(outer_steps), lams, "s--", ms=3, color="C1", label="λ")
    twin.set_ylabel("λ")
    fig.legend(loc="center right", bbox_to_anchor=(0.85, 0.6), fontsize=8)
    ax.set_title("tuning the L2 strength by implicit gradients")
    sec.figure(
        fig,
        "newton_hypergradient",
        "Each outer step solves the inner logistic regression by Newton and differentiates "
        "its solution w.r.t. λ through ∇f(w*, λ) = 0 (one Hessian solve at w*), then takes "
        "an Adam step on log λ.",
    )
    sec.text(
        f"Digits 3 vs 5, half for training and half for validation: λ went from 1 to "
        f"{lams[-1]:.3g} and the validation loss from {losses[0]:.3f} to {losses[-1]:.3f} "
        f"in {outer_steps} outer steps."
    )
    report.add_summary(
        "Newton, implicit hypergradient",
        f"validation loss {losses[0]:.3f} → {losses[-1]:.3f} (λ 1 → {lams[-1]:.3g})",
        "d w*/dλ = −H⁻¹ ∂²f/∂w∂λ, checked against finite differences in the tests",
    )


def two_exponentials(p, t, y):
    return p[0] * jnp.exp(-p[1] * t) + p[2] * jnp.exp(-p[3] * t) - y


def least_squares_fits(sec, report, num_fits=256) -> None:
    """A batch of curve fits in one `jit(vmap(least_squares))`, and a fit in a box."""
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 5.0, 200)
    a1, a2 = rng.uniform(0.5, 2.0, (2, num_fits))
    k1, k2 = rng.uniform(0.3, 0.8, num_fits), rng.uniform(1.5, 3.0, num_fits)
    clean = a1[:, None] * np.exp(-k1[:, None] * t) + a2[:, None] * np.exp(-k2[:, None] * t)
    y = clean + 0.01 * rng.standard_normal(clean.shape)
    with jax.enable_x64(True):
        start = jnp.array([1.0, 0.5, 1.0, 2.5])
        fits = jax.jit(
            jax.vmap(lambda y: newton.least_squares(two_exponentials, start, jnp.asarray(t), y))
        )(jnp.asarray(y))
        counts = np.bincount(np.asarray(fits.status), minlength=4)
        # Rosenbrock's residuals in the box x ≤ 0.5: the optimum is on the bound.
        residuals = lambda p: jnp.stack([10 * (p[1] - p[0] ** 2), 1 - p[0]])  # noqa: E731
        box = (jnp.array([-2.0, -1.0]), jnp.array([0.5, 2.0]))
        bounded = newton.least_squares(residuals, jnp.array([-1.2, 1.0]), bounds=box)
    status = ", ".join(f"{s.name} {c}" for s, c in zip(newton.Status, counts, strict=True))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i in range(4):
        params = np.asarray(fits.params[i])
        model = params[0] * np.exp(-params[1] * t) + params[2] * np.exp(-params[3] * t)
        left.plot(t, y[i], ".", ms=2, alpha=0.5)
        left.plot(t, model, "k-", lw=1)
    left.set(title="four of the fits (data dots, fits black)", xlabel="t", ylabel="y")
    grid = np.meshgrid(np.linspace(-2, 2, 200), np.linspace(-1, 3, 200))
    right.contour(grid[0], grid[1], np.log10(rosenbrock(grid) + 1e-3), levels=20, cmap="Greys")
    right.axvspan(0.5, 2.0, color="red", alpha=0.1, label="outside the box")
    right.plot(*np.asarray(bounded.params), "r*", ms=12, label="bounded fit")
    right.plot(1.0, 1.0, "k*", ms=10, label="unconstrained minimum")
    right.plot(-1.2, 1.0, "ko", label="start")
    right.set(title="Rosenbrock residuals, x ≤ 0.5", xlabel="x", ylabel="y")
    right.legend(fontsize=8)
    sec.figure(
        fig,
        "newton_least_squares",
        f"Left: {num_fits} two-exponential fits to 200 noisy points each, one "
        "jit(vmap(least_squares)) (Levenberg-Marquardt). Right: the fit of Rosenbrock's "
        "residuals in the box x ≤ 0.5 ends on the bound, where the projected gradient is zero.",
    )
    sec.text(
        f"{num_fits} Levenberg-Marquardt fits in one batch: {status}; the batch stopped after "
        f"{int(np.max(fits.num_steps))} steps (its slowest fit). The bounded Rosenbrock fit "
        f"ends at ({float(bounded.params[0]):.4g}, {float(bounded.params[1]):.4g}), status "
        f"{newton.Status(int(bounded.status)).name}."
    )
    report.add_summary(
        "least_squares, batched curve fits",
        f"{counts[0]}/{num_fits} SUCCESS in {int(np.max(fits.num_steps))} steps",
        "‖Jᵀr‖ ≤ 1e-8 per fit",
    )
    report.add_summary(
        "least_squares, Rosenbrock in x ≤ 0.5",
        "({:.4g}, {:.4g})".format(*np.asarray(bounded.params)),
        "(0.5, 0.25): the bound, y = x² there",
    )
