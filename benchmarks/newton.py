"""Newton's method: many small problems at once, and one large matrix-free problem."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from benchmarks._harness import Table, ms, ratio, time_fn
from gradjax import newton


def logistic_loss(w, x, y, l2=1e-2):
    """Mean logistic loss (labels in {0, 1}) plus ½·l2·‖w‖²."""
    z = x @ w
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w @ w


def logistic_problems(num_problems, n, d, dtype):
    kx, kw, kn = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (num_problems, n, d), dtype)
    w_true = jax.random.normal(kw, (num_problems, d), dtype)
    logits = jnp.einsum("pnd,pd->pn", x, w_true) + jax.random.normal(kn, (num_problems, n), dtype)
    return x, (logits > 0).astype(dtype)


def scipy_newton_cg(x, y, d):
    """SciPy's Newton-CG on each problem in a Python loop, with jitted JAX callbacks."""
    f = jax.jit(logistic_loss)
    g = jax.jit(jax.grad(logistic_loss))
    hvp = jax.jit(lambda w, v, a, b: jax.jvp(lambda u: g(u, a, b), (w,), (v,))[1])
    solutions = []
    for i in range(x.shape[0]):
        res = scipy.optimize.minimize(
            lambda w, a, b: float(f(w, a, b)),
            np.zeros(d),
            args=(x[i], y[i]),
            jac=lambda w, a, b: np.asarray(g(w, a, b)),
            hessp=lambda w, v, a, b: np.asarray(hvp(w, v, a, b)),
            method="Newton-CG",
            options={"xtol": 1e-12},
        )
        solutions.append(res.x)
    return np.stack(solutions)


def newton_batched(quick: bool) -> Table:
    num_problems, n, d = (256, 256, 16) if quick else (4096, 256, 16)
    num_scipy = 64 if quick else num_problems
    with jax.enable_x64(True):
        x, y = logistic_problems(num_problems, n, d, jnp.float64)
        x_s, y_s = x[:num_scipy], y[:num_scipy]
        t_scipy = time_fn(lambda: scipy_newton_cg(x_s, y_s, d), repeats=1)
        reference = scipy_newton_cg(x_s, y_s, d)
        per_scipy = t_scipy.median / num_scipy
        rows, worst = [], 0.0
        for dtype in (jnp.float64, jnp.float32):
            xd, yd = x.astype(dtype), y.astype(dtype)

            def solve(xi, yi, dtype=dtype):
                w0 = jnp.zeros(d, dtype)
                tol = 1e-9 if dtype == jnp.float64 else 1e-6
                return newton.minimize(logistic_loss, w0, xi, yi, num_steps=10, tol=tol)

            variants = {
                "`jit(vmap(minimize))`": jax.jit(jax.vmap(solve)),
                "`jit(lax.map(minimize))`": jax.jit(
                    lambda a, b, solve=solve: jax.lax.map(lambda ab: solve(*ab), (a, b))
                ),
            }
            for label, fn in variants.items():
                timing = time_fn(lambda fn=fn, xd=xd, yd=yd: fn(xd, yd), repeats=3)
                result = fn(xd, yd)
                diff = float(np.max(np.abs(np.asarray(result.params[:num_scipy]) - reference)))
                worst = max(worst, diff)
                per = timing.median / num_problems
                rows.append(
                    [
                        f"gradjax {label}, {jnp.dtype(dtype).name}",
                        per * 1e6,
                        timing.compile,
                        f"{float(jnp.mean(result.converged)):.0%}",
                        int(jnp.max(result.num_steps)),
                        f"{diff:.1e}",
                        ratio(per_scipy, per),
                    ]
                )
    rows.append(
        [
            f"SciPy Newton-CG, Python loop over {num_scipy} problems, jitted callbacks, float64",
            per_scipy * 1e6,
            0.0,
            "100%",
            "-",
            "0",
            "1.00x",
        ]
    )
    return Table(
        name="newton_batched",
        title=f"{num_problems} L2-regularised logistic regressions (n={n}, d={d}), dense Newton",
        columns=[
            "solver",
            "µs / problem",
            "compile s",
            "converged",
            "max steps",
            "max |w - w_SciPy|",
            "speed-up vs SciPy",
        ],
        rows=rows,
        notes=[
            "Target: >= 100x faster, solutions within 1e-5 of SciPy's "
            f"(worst here {worst:.1e}). gradjax stops at ‖g‖ <= 1e-9 in float64, 1e-6 in "
            "float32 (float32 cannot resolve the weights to 1e-5 much better than this).",
            "Under vmap, gradjax computes all 10 scan steps for every problem (a fixed-length, "
            "differentiable loop; a batched lax.cond computes both branches), while SciPy stops "
            "each problem as soon as it converges. Under a sequential lax.map the loop's "
            "lax.cond really skips the steps after convergence.",
            "On XLA:CPU the vmapped 16×16 Hessians become small batched matmuls (the Hessian "
            "is ~80% of a step), so lax.map is the fast form on a CPU; on an accelerator the "
            "vmapped form is.",
        ],
        data={"max_abs_diff": worst},
    )


def smooth_tv_denoising(x, b, lam=1.0, delta=0.2):
    """½‖x - b‖² + λ Σᵢ δ·log cosh((x_{i+1} - x_i)/δ): a smoothed total-variation denoiser.

    Strictly convex; its Hessian I + λ/δ · Dᵀ diag(sech²) D is tridiagonal with a
    condition number up to 1 + 4λ/δ, so CG has real work to do at every Newton step.
    """
    jumps = (x[1:] - x[:-1]) / delta
    log_cosh = jnp.abs(jumps) + jnp.log1p(jnp.exp(-2 * jnp.abs(jumps))) - jnp.log(2.0)
    return 0.5 * jnp.sum((x - b) ** 2) + lam * delta * jnp.sum(log_cosh)


def newton_cg_large(quick: bool) -> Table:
    d, outer = (10_000, 5) if quick else (100_000, 10)
    with jax.enable_x64(True):
        t = jnp.linspace(0, 1, d)
        clean = jnp.sign(jnp.sin(12 * jnp.pi * t)) + t
        noisy = clean + 0.3 * jax.random.normal(jax.random.key(0), (d,))
        f = jax.jit(smooth_tv_denoising)
        g = jax.jit(jax.grad(smooth_tv_denoising))
        hvp = jax.jit(lambda w, v, b: jax.jvp(lambda u: g(u, b), (w,), (v,))[1])
        x0, b_np = np.asarray(noisy), np.asarray(noisy)

        def scipy_run():
            return scipy.optimize.minimize(
                lambda w, b: float(f(w, b)),
                x0,
                args=(b_np,),
                jac=lambda w, b: np.asarray(g(w, b)),
                hessp=lambda w, v, b: np.asarray(hvp(w, v, b)),
                method="Newton-CG",
                options={"maxiter": outer},
            )

        t_scipy = time_fn(scipy_run, repeats=1)
        ref = scipy_run()
        # The same budget of Hessian-vector products per outer step as SciPy used.
        cg_iters = max(1, math.ceil(ref.nhev / ref.nit))
        ours_fn = jax.jit(
            lambda x, b: newton.minimize(
                smooth_tv_denoising,
                x,
                b,
                method="newton_cg",
                num_steps=ref.nit,
                maxiter=cg_iters,
                cg_tol=0.0,
                tol=0.0,
            )
        )
        t_ours = time_fn(lambda: ours_fn(noisy, noisy), repeats=3)
        ours = ours_fn(noisy, noisy)
        hvp_time = time_fn(lambda: hvp(noisy, noisy, noisy), repeats=20)

    per_scipy = t_scipy.median / ref.nit
    per_ours = t_ours.median / ref.nit
    return Table(
        name="newton_cg_large",
        title=f"Newton-CG steps on smoothed total-variation denoising, d = {d:,}, float64",
        columns=[
            "solver",
            "ms / Newton step",
            "HVPs / step",
            "f after the run",
            "compile s",
            "speed-up vs SciPy",
        ],
        rows=[
            [
                "gradjax `minimize(method='newton_cg')`",
                ms(per_ours),
                cg_iters,
                float(ours.value),
                t_ours.compile,
                ratio(per_scipy, per_ours),
            ],
            [
                "SciPy `minimize(method='Newton-CG')`, jitted jac/hessp",
                ms(per_scipy),
                round(ref.nhev / ref.nit, 1),
                float(ref.fun),
                0.0,
                "1.00x",
            ],
        ],
        notes=[
            f"{ref.nit} outer steps each from the same start; gradjax gets SciPy's average HVP "
            f"budget per step (CG maxiter={cg_iters}, no residual test); SciPy uses its own CG "
            "stopping rule and a Wolfe line search, gradjax Armijo backtracking.",
            f"One compiled HVP alone: {ms(hvp_time.median):.2f} ms. Target >= 2x.",
        ],
        data={"nit": int(ref.nit), "nhev": int(ref.nhev)},
    )


BENCHMARKS = {"newton_batched": newton_batched, "newton_cg_large": newton_cg_large}
