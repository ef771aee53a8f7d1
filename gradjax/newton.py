"""Newton's method and gradient descent: two local models of the loss.

At ``x`` both methods minimise a quadratic model of ``f``,

    m(x + Δ) = f(x) + gᵀΔ + ½ ΔᵀBΔ,    argmin Δ = -B⁻¹g,

Newton with the curvature ``B = H = ∇²f(x)`` (the tangent paraboloid), gradient
descent with ``B = I/η`` (an isotropic paraboloid, always convex). Newton's model is
second-order accurate but ``H`` may be indefinite, so its argmin can be a maximum
or a saddle; :func:`minimize` guards against that (see its docstring).

``params`` may be any pytree of floating arrays; it is flattened with
``jax.flatten_util.ravel_pytree`` for the dense solve, and kept as a pytree for the
matrix-free one.

References:
  Nocedal & Wright, *Numerical Optimization* (2006), ch. 3 (line search), 4
  (Levenberg–Marquardt / trust region), 7.1 (Newton-CG). Su Jianlin, "Gradient
  descent and EM: one idea" (kexue.fm/archives/4277).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradjax._checks import floating_tree
from gradjax._loop import scan_loop, tree_select

PyTree = Any
METHODS = ("newton", "newton_cg", "gradient_descent")


# ----------------------------------------------------------------------------- checks


def _check_fun(fun: Callable, params: PyTree, args: tuple) -> None:
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {type(fun).__name__}")
    out = jax.eval_shape(fun, params, *args)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"fun must return a scalar, got output of shape {shape}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"fun must return a floating scalar, got dtype {out.dtype}")


def _check_nonnegative(name: str, value: Any) -> None:
    if isinstance(value, (int, float)) and not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


# ----------------------------------------------------------------------------- steps


def _tree_dot(a: PyTree, b: PyTree) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _tree_axpy(alpha: jax.Array, x: PyTree, y: PyTree) -> PyTree:
    """``alpha * x + y`` leafwise, keeping ``y``'s dtypes."""
    return jax.tree.map(lambda a, b: (alpha * a + b).astype(b.dtype), x, y)


def global_norm(tree: PyTree) -> jax.Array:
    """The L2 norm of all leaves together, ``sqrt(Σ‖leaf‖²)``."""
    return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(tree)))


def _flat_hessian(fun, params, args):
    """The dense Hessian of ``fun`` in the flattened parameters, and the unravel function."""
    flat, unravel = ravel_pytree(params)

    def flat_fun(v):
        return fun(unravel(v), *args)

    return jax.hessian(flat_fun)(flat), unravel


def _solve_damped(h, g, damping):
    """``Δ`` solving ``(H + damping·I) Δ = -g``."""
    return jnp.linalg.solve(h + damping * jnp.eye(g.size, dtype=g.dtype), -g)


def _convexified_newton_solve(h, g, damping):
    """Solves ``(H + μI) Δ = -g`` with ``μ >= damping`` large enough for ``H + μI ≻ 0``.

    A Cholesky factorisation tests positive definiteness: if ``H + damping·I``
    factors, ``μ = damping`` (so a convex problem gets the exact damped Newton step);
    otherwise ``μ`` is raised to the Gershgorin bound
    ``max_i(Σ_{j≠i}|H_ij| - H_ii) + 1e-3·(1 + max_i|H_ii|)``, which makes every
    Gershgorin disc, and so every eigenvalue, positive. The model is then convex and
    ``Δ`` a descent direction. (A Cholesky test costs a fraction of an eigensolve.)
    """
    h = (h + h.T) / 2
    eye = jnp.eye(g.size, dtype=g.dtype)
    chol = jnp.linalg.cholesky(h + damping * eye)
    is_pd = jnp.all(jnp.isfinite(chol))
    diag = jnp.diagonal(h)
    radius = jnp.sum(jnp.abs(h), axis=1) - jnp.abs(diag)
    gershgorin = jnp.max(radius - diag) + 1e-3 * (1 + jnp.max(jnp.abs(diag)))
    mu = jnp.where(is_pd, damping, jnp.maximum(damping, gershgorin))
    chol = jnp.where(is_pd, chol, jnp.linalg.cholesky(h + mu * eye))
    return jax.scipy.linalg.cho_solve((chol, True), -g)


def newton_step(fun: Callable, params: PyTree, *args, damping: float = 0.0) -> PyTree:
    """One Newton step with the dense Hessian: ``x⁺ = x + Δ``, ``(H + damping·I) Δ = -g``.

    ``Δ`` minimises the tangent model ``f(x) + gᵀΔ + ½Δᵀ(H + damping·I)Δ``; on a
    strictly convex quadratic it lands on the minimiser in one step. This is the raw
    step (no safeguard): with an indefinite ``H + damping·I`` it may go uphill, which
    :func:`minimize` prevents.

    Args:
      fun: ``fun(params, *args) -> scalar``.
      params: a pytree of floating arrays (flattened for the solve; the Hessian is
        ``n×n`` for ``n`` parameters).
      *args: further arguments of ``fun`` (data), not differentiated.
      damping: Levenberg damping ``λ >= 0`` added to the Hessian's diagonal.

    Returns:
      The new params, same pytree structure and dtypes.

    Example:
      >>> f = lambda x: jnp.sum((x - 3.0) ** 2)
      >>> newton_step(f, jnp.zeros(2))
      Array([3., 3.], dtype=float32)
    """
    params = floating_tree("params", params)
    _check_fun(fun, params, args)
    _check_nonnegative("damping", damping)
    g = ravel_pytree(jax.grad(fun)(params, *args))[0]
    h, unravel = _flat_hessian(fun, params, args)
    return _tree_axpy(1.0, unravel(_solve_damped(h, g, damping)), params)


def _hvp(fun, params, args):
    """``v -> H v`` by forward-over-reverse differentiation (no Hessian is formed)."""
    grad_fn = jax.grad(lambda p: fun(p, *args))

    def hvp(v):
        return jax.jvp(grad_fn, (params,), (v,))[1]

    return hvp


def _conjugate_gradients(matvec, b, *, maxiter, tol):
    """Solves ``A x = b`` for SPD ``A`` from ``x = 0``, stopping at ``‖r‖ <= tol·‖b‖``.

    If a direction of non-positive curvature ``pᵀAp <= 0`` appears, the iteration
    stops and keeps the iterate so far (Steihaug's rule; the first iterate is the
    steepest-descent direction ``b``), so the result is always a descent direction
    for ``b = -g``.
    """
    zeros = jax.tree.map(jnp.zeros_like, b)
    bnorm2 = _tree_dot(b, b).real
    threshold = (tol**2) * bnorm2

    def cond(state):
        _, _, _, rr, k, stop = state
        return (k < maxiter) & (rr > threshold) & ~stop

    def body(state):
        x, r, p, rr, k, _ = state
        ap = matvec(p)
        curvature = _tree_dot(p, ap).real
        negative = curvature <= 0
        alpha = rr / jnp.where(negative, 1.0, curvature)
        x_new = _tree_axpy(alpha, p, x)
        # Negative curvature on the first iteration: fall back to the gradient direction.
        x_new = tree_select(negative, tree_select(k == 0, b, x), x_new)
        r_new = _tree_axpy(-alpha, ap, r)
        rr_new = _tree_dot(r_new, r_new).real
        p_new = _tree_axpy(rr_new / jnp.where(rr > 0, rr, 1.0), p, r_new)
        return x_new, r_new, p_new, rr_new, k + 1, negative

    init = (zeros, b, b, bnorm2, jnp.zeros([], jnp.int32), jnp.zeros([], bool))
    return jax.lax.while_loop(cond, body, init)[0]


def _cg_direction(fun, params, args, grad, damping, maxiter, tol):
    """CG on ``(H + damping·I) Δ = -g`` with Hessian-vector products; a descent direction."""
    hvp = _hvp(fun, params, args)

    def matvec(v):
        return _tree_axpy(damping, v, hvp(v))

    minus_g = jax.tree.map(jnp.negative, grad)
    size = sum(x.size for x in jax.tree.leaves(params))
    return _conjugate_gradients(
        matvec, minus_g, maxiter=size if maxiter is None else maxiter, tol=tol
    )


def newton_cg_step(
    fun: Callable,
    params: PyTree,
    *args,
    damping: float = 0.0,
    maxiter: int | None = None,
    tol: float = 1e-5,
) -> PyTree:
    """One matrix-free Newton step: solves ``(H + damping·I) Δ = -g`` by conjugate gradients.

    Only Hessian-vector products ``Hv = ∂/∂ε ∇f(x + εv)`` are used (forward-over-reverse,
    the cost of about two gradients each), so memory stays O(n). CG stops when the
    residual is below ``tol·‖g‖``, after ``maxiter`` iterations, or at the first
    direction of non-positive curvature (Steihaug), keeping the iterate so far, which
    is a descent direction. On an SPD problem with enough iterations this is the dense
    :func:`newton_step`.

    Args:
      fun: ``fun(params, *args) -> scalar``.
      params: a pytree of floating arrays (kept as a pytree, never flattened).
      *args: further arguments of ``fun``, not differentiated.
      damping: ``λ >= 0`` added to the Hessian's diagonal.
      maxiter: at most this many CG iterations (default: the number of parameters).
      tol: relative residual tolerance of CG.

    Returns:
      The new params.

    Example:
      >>> f = lambda x: jnp.sum((x - 3.0) ** 2)
      >>> newton_cg_step(f, jnp.zeros(2))
      Array([3., 3.], dtype=float32)
    """
    params = floating_tree("params", params)
    _check_fun(fun, params, args)
    _check_nonnegative("damping", damping)
    _check_cg_options(maxiter, tol, "tol")
    grad = jax.grad(fun)(params, *args)
    delta = _cg_direction(fun, params, args, grad, damping, maxiter, tol)
    return _tree_axpy(1.0, delta, params)


def _check_cg_options(maxiter, tol, tol_name):
    if maxiter is not None and (isinstance(maxiter, bool) or not isinstance(maxiter, int)):
        raise TypeError(f"maxiter must be an int or None, got {type(maxiter).__name__}")
    if maxiter is not None and maxiter < 1:
        raise ValueError(f"maxiter must be >= 1, got {maxiter}")
    _check_nonnegative(tol_name, tol)


def gradient_descent_step(fun: Callable, params: PyTree, *args, learning_rate: float) -> PyTree:
    """One gradient-descent step, ``x⁺ = x - η g``: Newton with ``H ≈ I/η``.

    It is the exact minimiser of the isotropic model
    ``m(x + Δ) = f(x) + gᵀΔ + ‖Δ‖²/(2η)``: setting ``∇m = g + Δ/η = 0`` gives
    ``Δ = -ηg``. The model is only first-order accurate, but always convex, so its
    minimiser always exists; with ``η = 1/f''`` on a 1-D quadratic it is Newton.

    Args:
      fun: ``fun(params, *args) -> scalar``.
      params: a pytree of floating arrays.
      *args: further arguments of ``fun``.
      learning_rate: ``η > 0``, the inverse of the model's curvature.

    Returns:
      The new params.

    Example:
      >>> gradient_descent_step(lambda x: jnp.sum(x**2), jnp.ones(2), learning_rate=0.25)
      Array([0.5, 0.5], dtype=float32)
    """
    params = floating_tree("params", params)
    _check_fun(fun, params, args)
    _check_learning_rate(learning_rate)
    g = jax.grad(fun)(params, *args)
    return _tree_axpy(-learning_rate, g, params)


def _check_learning_rate(learning_rate):
    if learning_rate is None:
        raise TypeError("learning_rate is required for gradient descent")
    if isinstance(learning_rate, (int, float)) and not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")


# ----------------------------------------------------------------------------- minimize


class MinimizeResult(NamedTuple):
    """What :func:`minimize` returns.

    Attributes:
      params: the final iterate.
      value: ``fun(params)``.
      values: (num_steps,) ``fun`` after each step (frozen once converged).
      grad_norms: (num_steps,) global L2 norm of the gradient after each step.
      num_steps: int32, the steps actually taken.
      converged: bool, the final gradient norm is ``<= tol`` (and finite).
    """

    params: PyTree
    value: jax.Array
    values: jax.Array
    grad_norms: jax.Array
    num_steps: jax.Array
    converged: jax.Array


class _State(NamedTuple):
    params: PyTree
    value: jax.Array
    grad: PyTree
    damping: jax.Array  # the adaptive Levenberg damping of the Newton methods


def _backtrack(fun, args, params, value, grad, direction, *, max_halvings=30):
    """Armijo backtracking along a descent ``direction``: largest ``t = 2^-i`` with
    ``f(x + tΔ) <= f(x) + 1e-4·t·gᵀΔ``; ``t = 0`` (stay) if none of ``max_halvings`` do.

    Returns ``t``; ``f(x + tΔ) <= f(x)`` always holds.
    """
    slope = _tree_dot(grad, direction).real

    def trial(t):
        return fun(_tree_axpy(t, direction, params), *args)

    def cond(state):
        t, new_value, i = state
        ok = jnp.isfinite(new_value) & (new_value <= value + 1e-4 * t * slope)
        return ~ok & (i < max_halvings)

    def body(state):
        t, _, i = state
        t = t / 2
        return t, trial(t), i + 1

    t0 = jnp.ones([], value.dtype)
    t, new_value, _ = jax.lax.while_loop(cond, body, (t0, trial(t0), jnp.zeros([], jnp.int32)))
    accepted = jnp.isfinite(new_value) & (new_value <= value + 1e-4 * t * slope)
    return jnp.where(accepted, t, 0.0)


def _newton_direction(method, fun, args, state, options):
    """A descent direction from the damped Newton model ``H + μI``.

    ``μ`` is the adaptive Levenberg damping of the state plus the fixed ``damping``
    option. Dense Newton convexifies an indefinite model (see
    :func:`_convexified_newton_solve`); Newton-CG handles negative curvature inside
    CG (Steihaug).
    """
    base = options["damping"]
    if method == "newton":
        h, unravel = _flat_hessian(fun, state.params, args)
        g = ravel_pytree(state.grad)[0]
        return unravel(_convexified_newton_solve(h, g, state.damping + base))
    return _cg_direction(
        fun,
        state.params,
        args,
        state.grad,
        state.damping + base,
        options["maxiter"],
        options["cg_tol"],
    )


def minimize(
    fun: Callable,
    params: PyTree,
    *args,
    method: str = "newton",
    num_steps: int = 50,
    tol: float = 1e-6,
    **options,
) -> MinimizeResult:
    """Minimises ``fun`` by repeatedly minimising a local quadratic model of it.

    Each step builds ``m(Δ) = f + gᵀΔ + ½ΔᵀBΔ`` at the current iterate and moves
    towards its minimiser ``Δ = -B⁻¹g``:

    * ``"newton"``: ``B = H + μI`` with the dense Hessian (``jax.hessian``).
    * ``"newton_cg"``: the same model solved matrix-free by CG on Hessian-vector products.
    * ``"gradient_descent"``: ``B = I/η`` (option ``learning_rate``).

    Safeguards (so the iterate never goes uphill and a saddle is not a destination):
    the Newton methods keep an adaptive Levenberg damping ``μ`` (shrunk after a full
    step, grown after a shortened one); dense Newton raises ``μ`` to a Gershgorin
    bound whenever ``H + μI`` is not positive definite (a failed Cholesky), and
    Newton-CG stops CG at the first negative-curvature direction; in every method an
    Armijo backtracking line search accepts only steps that decrease ``f`` (if none
    does, the iterate stays). Hence ``values`` is non-increasing. On a strictly
    convex quadratic, dense Newton converges in one step (the damping starts at the
    ``damping`` option, default 0). An iterate that starts exactly at a critical
    point (``g = 0``) has nothing to descend along and is returned as converged.

    The loop is a fixed-length ``lax.scan`` of ``num_steps`` (``gradjax._loop``); once
    ``‖g‖ <= tol`` the iterate is frozen, so ``jax.vmap`` over problems works and
    ``jax.grad`` flows through (gradients w.r.t. ``args`` through the unrolled steps).

    Args:
      fun: ``fun(params, *args) -> scalar``.
      params: initial iterate, a pytree of floating arrays.
      *args: data passed to ``fun`` (may be traced, batched by vmap, differentiated).
      method: ``"newton"`` (default), ``"newton_cg"`` or ``"gradient_descent"``.
      num_steps: static number of scan steps (the maximum number of iterations).
      tol: stop once the global gradient norm is ``<= tol``.
      **options: ``damping`` (Newton methods, default 0.0: a fixed extra damping added
        to the adaptive one); ``maxiter`` (CG iterations, default the number of
        parameters) and ``cg_tol`` (default 1e-5, CG stops at a residual
        ``<= cg_tol·‖g‖``) for ``"newton_cg"``; ``learning_rate`` (required) for
        ``"gradient_descent"``.

    Returns:
      A :class:`MinimizeResult`; ``converged`` is false (never an exception) when the
      tolerance was not reached or the values became non-finite.

    Example:
      >>> rosen = lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2
      >>> r = minimize(rosen, jnp.array([-1.2, 1.0]), num_steps=100)
      >>> bool(r.converged), r.params.round(4)
      (True, Array([1., 1.], dtype=float32))
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    allowed = {
        "newton": {"damping"},
        "newton_cg": {"damping", "maxiter", "cg_tol"},
        "gradient_descent": {"learning_rate"},
    }[method]
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(
            f"unexpected options {sorted(unknown)} for method={method!r}; "
            f"allowed: {sorted(allowed)}"
        )
    params = floating_tree("params", params)
    _check_fun(fun, params, args)
    _check_nonnegative("tol", tol)
    options = {"damping": 0.0, "maxiter": None, "cg_tol": 1e-5, **options}
    _check_nonnegative("damping", options["damping"])
    if method == "newton_cg":
        _check_cg_options(options["maxiter"], options["cg_tol"], "cg_tol")
    if method == "gradient_descent":
        _check_learning_rate(options.get("learning_rate"))

    value_and_grad = jax.value_and_grad(fun)
    value, grad = value_and_grad(params, *args)
    dtype = value.dtype

    def step(state: _State) -> _State:
        if method == "gradient_descent":
            direction = jax.tree.map(lambda g: -options["learning_rate"] * g, state.grad)
        else:
            direction = _newton_direction(method, fun, args, state, options)
        t = _backtrack(fun, args, state.params, state.value, state.grad, direction)
        new_params = _tree_axpy(t, direction, state.params)
        new_value, new_grad = value_and_grad(new_params, *args)
        damping = jnp.where(t == 1.0, state.damping / 4, jnp.maximum(state.damping * 4, 1e-4))
        return _State(new_params, new_value, new_grad, damping.astype(dtype))

    def converged(state: _State) -> jax.Array:
        return global_norm(state.grad) <= tol

    def record(state: _State):
        return state.value, global_norm(state.grad)

    init = _State(params, value, grad, jnp.zeros([], dtype))
    out = scan_loop(step, init, num_steps=num_steps, converged=converged, record=record)
    values, grad_norms = out.trace
    ok = out.converged & jnp.isfinite(out.state.value)
    return MinimizeResult(out.state.params, out.state.value, values, grad_norms, out.num_steps, ok)
