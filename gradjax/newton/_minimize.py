"""``minimize``: repeat the step that minimises a local model, until the model is exact."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from gradjax._checks import (
    check_choice,
    check_int,
    check_scalar,
    check_scalar_fun,
)
from gradjax._status import Status
from gradjax.newton._adjoint import implicit_adjoint
from gradjax.newton._bounds import bounded_solve, check_bounds
from gradjax.newton._cg import matrix_free_model
from gradjax.newton._driver import iterate
from gradjax.newton._line_search import LineSearch
from gradjax.newton._model import dense_model
from gradjax.newton._steps import check_params

PyTree = Any
METHODS = ("newton", "newton_cg", "gradient_descent")
ADJOINTS = ("implicit", "unrolled")
# The options that belong to each method; the line-search constants belong to all.
METHOD_OPTIONS = {
    "newton": ("damping",),
    "newton_cg": ("damping", "cg_num_steps", "cg_tol"),
    "gradient_descent": ("learning_rate",),
}


class MinimizeResult(NamedTuple):
    """What :func:`minimize` returns.

    Attributes:
      params: the final iterate, in the dtypes of the initial params.
      value: ``fun(params)``.
      values: (num_steps,) ``fun`` after each step (flat after the last step taken).
      grad_norms: (num_steps,) the global L2 norm of the gradient after each step.
      num_steps: int32, the steps actually taken.
      converged: bool, ``status == Status.SUCCESS``.
      status: int32, a :class:`Status` code.
    """

    params: PyTree
    value: jax.Array
    values: jax.Array
    grad_norms: jax.Array
    num_steps: jax.Array
    converged: jax.Array
    status: jax.Array


class MethodOptions(NamedTuple):
    """:func:`minimize`'s method options, checked, with the defaults filled in
    (``cg_num_steps`` stays ``None`` until the problem size is known; ``cg_tol=None`` is
    the adaptive forcing term)."""

    damping: Any
    learning_rate: Any
    cg_num_steps: int | None
    cg_tol: Any
    line_search: LineSearch


def check_fraction(name: str, value: Any) -> Any:
    """A real scalar in the open interval (0, 1) (traced values pass)."""
    value = check_scalar(name, value, low=0.0, strict=True, high=1.0)
    if isinstance(value, float) and value == 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
    return value


def check_options(method: str, adjoint: str, given: dict, line_search: dict) -> MethodOptions:
    """Validates ``minimize``'s options: an option given (not ``None``) that does not
    belong to ``method`` is a ValueError naming it."""
    check_choice("method", method, METHODS)
    check_choice("adjoint", adjoint, ADJOINTS)
    for name, value in given.items():
        if value is not None and name not in METHOD_OPTIONS[method]:
            raise ValueError(
                f"{name} is not an option of method={method!r} "
                f"(its options: {', '.join(METHOD_OPTIONS[method])})"
            )
    damping = given["damping"]
    damping = 0.0 if damping is None else check_scalar("damping", damping, low=0.0)
    cg_num_steps, cg_tol = given["cg_num_steps"], given["cg_tol"]
    if cg_num_steps is not None:
        cg_num_steps = check_int("cg_num_steps", cg_num_steps, 1)
    if cg_tol is not None:
        cg_tol = check_scalar("cg_tol", cg_tol, low=0.0)
    learning_rate = given["learning_rate"]
    if method == "gradient_descent":
        if learning_rate is None:
            raise TypeError("learning_rate is required for method='gradient_descent'")
        learning_rate = check_scalar("learning_rate", learning_rate, low=0.0, strict=True)
    constants = LineSearch(
        armijo=check_fraction("armijo", line_search["armijo"]),
        backtrack=check_fraction("backtrack", line_search["backtrack"]),
        max_backtracks=check_int("max_backtracks", line_search["max_backtracks"], 0),
    )
    return MethodOptions(damping, learning_rate, cg_num_steps, cg_tol, constants)


def _compute_dtype(leaf: jax.Array) -> jnp.dtype:
    """Low-precision floats are solved in float32."""
    return jnp.float32 if jnp.finfo(leaf.dtype).bits < 32 else leaf.dtype


def minimize(
    fun: Callable,
    params: PyTree,
    *args,
    method: str = "newton",
    num_steps: int = 50,
    tol: float = 1e-6,
    adjoint: str = "implicit",
    damping: float | None = None,
    learning_rate: float | None = None,
    cg_num_steps: int | None = None,
    cg_tol: float | None = None,
    armijo: float = 1e-4,
    backtrack: float = 0.5,
    max_backtracks: int = 30,
    bounds: tuple[PyTree, PyTree] | None = None,
) -> MinimizeResult:
    """Minimises ``fun`` by repeatedly minimising a local model of it.

    Each step builds the model ``m(Δ) = f + gᵀΔ + ½ΔᵀBΔ`` at the iterate and moves
    towards its minimiser ``Δ = -B⁻¹g``:

    * ``"newton"``: ``B = H + damping·I``, the dense Hessian (one ``jacfwd`` of
      ``value_and_grad`` gives ``f``, ``g`` and ``H`` together), solved by Cholesky.
    * ``"newton_cg"``: the same model solved matrix-free by CG on Hessian-vector products.
    * ``"gradient_descent"``: ``B = I/η`` (option ``learning_rate``).

    Globalisation: where ``H`` is not positive definite, dense Newton steps on the
    eigenvalue-magnitude model ``V|Λ|Vᵀ`` (Newton-CG: CG stops at the first direction
    whose curvature is not clearly positive and keeps the descent iterate so far). Such
    a step is a descent direction that moves downhill along every direction of negative
    curvature the gradient has a component in, so it leaves saddles by itself; a
    direction of negative curvature ``d`` (the eigenvector of ``λ_min``, or the one a CG
    probe on a fixed random vector finds) is added only at a small gradient,
    ``‖g‖ <= tol``, where the point would otherwise pass as a solution. So the iterate
    leaves a saddle or maximum even from a point with ``g = 0``, while away from
    stationarity the step keeps the scale of the Newton model (a unit-length ``d`` there
    stalls Biggs EXP6 and throws Osborne 1 away). This was chosen over a trust region:
    the convex path stays one Cholesky per step, with no radius to tune.
    A backtracking (Armijo) line search on ``x + t·s + √t·d`` accepts only decreasing
    steps that move ``x``, so ``values`` never increases. Near the solution, where the
    Armijo test cannot resolve the decrease, a full step that does not increase ``‖g‖``
    is accepted. ``SUCCESS`` means ``‖g‖ <= tol`` with no negative curvature found
    there (eigenvalues, or CG curvatures, above ``-√ε·‖H‖``); with ``damping > 0``
    dense Newton's test is on ``H + damping·I``. A constant function is SUCCESS at step 0.

    The loop is a bounded ``lax.while_loop`` (``adjoint="implicit"``): it stops once
    every problem is done, also under ``jax.vmap``, so ``num_steps`` is a bound, not
    a cost. ``bfloat16``/``float16`` params are solved in float32 and returned in
    their own dtype.

    Gradients: with ``adjoint="implicit"`` (the default), ``jax.grad`` of the
    solution w.r.t. ``*args`` (and values ``fun`` closes over) goes through the
    optimality condition ``∇ₓf(x*, θ) = 0``: one linear solve with the Hessian at
    ``x*`` (dense for ``"newton"``, CG otherwise), memory independent of
    ``num_steps``; exact at a minimiser, approximate when ``status`` is not SUCCESS;
    the initial ``params`` get a zero gradient. Where ``H`` at ``x*`` is singular (the
    minimiser is not unique) the solve is the least-norm one (pseudo-inverse; CG from
    zero gives the same): the derivative of the minimiser nearest the one returned,
    with no component along ``H``'s null space. ``adjoint="unrolled"``
    differentiates through the iterations of a fixed-length ``lax.scan``; after
    SUCCESS the remaining scan steps keep differentiating the fixed-point map (their
    value is the solution, unchanged): one such step for the Newton methods, all of
    them for gradient descent, whose unrolled derivative converges linearly like its
    iterates. Without them an exact first step (``learning_rate = 1/H`` on a
    quadratic) would give the derivative of that one step, 0 from a fixed start.

    Args:
      fun: ``fun(params, *args) -> scalar``.
      params: initial iterate, a pytree of floating arrays (finite, when concrete).
      *args: pytrees of arrays passed to ``fun`` (may be traced, batched by vmap,
        differentiated).
      method: ``"newton"`` (default), ``"newton_cg"`` or ``"gradient_descent"``.
      num_steps: the most steps to take (static).
      tol: success once the global gradient norm is ``<= tol``.
      adjoint: ``"implicit"`` (default) or ``"unrolled"``.
      damping: ``"newton"``, ``"newton_cg"``: ``>= 0`` added to the Hessian's diagonal
        (default 0).
      learning_rate: ``"gradient_descent"`` (required): ``η > 0``.
      cg_num_steps: ``"newton_cg"``: the most CG iterations per step (static; default
        ``10·n`` for ``n`` parameters, also for the curvature probe).
      cg_tol: ``"newton_cg"``: CG's relative residual tolerance; default ``None``, the
        forcing term ``min(0.5, √‖g‖)`` (Steihaug): loose far away, tight near the
        solution.
      armijo: the Armijo fraction ``σ`` in (0, 1) of the predicted decrease (1e-4).
      backtrack: the factor ``β`` in (0, 1) that shortens the step (0.5).
      max_backtracks: the most shortenings per step (static, 30); then NO_DESCENT.
      bounds: ``"newton"``, ``"newton_cg"``: ``(lower, upper)``, pytrees like ``params``
        (``±inf`` for none, ``lower <= upper``): projected Newton (Bertsekas 1982), the
        reduced Newton step on the coordinates off the active set, every trial point
        projected (the iterates never leave the box); SUCCESS at the projected
        gradient's norm ``‖x - P(x - g)‖ <= tol`` (``grad_norms`` trace it); the
        implicit adjoint solves the free block and gives the bound coordinates zero.

    Returns:
      A :class:`MinimizeResult`; failures are reported in ``status``, never raised.
      An option given to a method it does not belong to is a ValueError.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import newton
      >>> rosen = lambda p: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2
      >>> r = newton.minimize(rosen, jnp.array([-1.2, 1.0]))
      >>> newton.Status(int(r.status)).name, r.params.round(4)
      ('SUCCESS', Array([1., 1.], dtype=float32))
      >>> saddle = lambda p: p[0] ** 2 + (p[1] ** 2 - 1) ** 2  # saddle at (0, 0)
      >>> newton.minimize(saddle, jnp.array([1.0, 0.0])).params.round(4)
      Array([0., 1.], dtype=float32)

    References:
      Moré & Sorensen (1979), negative-curvature directions; Steihaug (1983), CG's
      forcing term and curvature test; Nocedal & Wright (2006), 3.4 (modified Newton),
      7.1 (Newton-CG).
    """
    given = {
        "damping": damping,
        "learning_rate": learning_rate,
        "cg_num_steps": cg_num_steps,
        "cg_tol": cg_tol,
    }
    line = {"armijo": armijo, "backtrack": backtrack, "max_backtracks": max_backtracks}
    options = check_options(method, adjoint, given, line)
    num_steps = check_int("num_steps", num_steps, 0)
    check_scalar("tol", tol, low=0.0)
    params = check_params(params)
    args = jax.tree.map(jnp.asarray, args)
    dtypes = jax.tree.map(lambda leaf: leaf.dtype, params)
    params = jax.tree.map(lambda leaf: leaf.astype(_compute_dtype(leaf)), params)
    check_scalar_fun("fun", fun, params, *args)
    closed_fun, consts = jax.closure_convert(lambda p, *a: fun(p, *a), params, *args)
    args = (*args, *consts)
    unrolled = adjoint == "unrolled"
    size = optax.tree.size(params)
    if bounds is not None and method == "gradient_descent":
        raise ValueError("bounds is an option of methods 'newton' and 'newton_cg' only")
    box = check_bounds(bounds, params)
    settle_steps = (num_steps if method == "gradient_descent" else 1) if unrolled else 0
    run = functools.partial(
        iterate,
        tol=tol,
        num_steps=num_steps,
        constants=options.line_search,
        unrolled=unrolled,
        settle_steps=settle_steps,
    )

    def solve(params, args):
        if method == "newton":
            flat, unravel = ravel_pytree(params)
            model = dense_model(
                lambda x, *a: closed_fun(unravel(x), *a),
                args,
                options.damping,
                unrolled=unrolled,
            )
            out = run(model, flat)
            curvature = out.point.curvature
            # The last Cholesky factor is the implicit adjoint's, when it is H's own.
            damping = options.damping
            undamped = isinstance(damping, (int, float)) and damping == 0
            factor = (curvature.chol, curvature.positive_definite) if undamped else None
            aux = (out.values, out.grad_norms, out.num_steps, out.status)
            return unravel(out.params), aux, factor
        cg_steps = 10 * size if options.cg_num_steps is None else options.cg_num_steps
        model = matrix_free_model(
            closed_fun,
            args,
            tol,
            newton=method == "newton_cg",
            damping=options.damping,
            cg_num_steps=cg_steps,
            cg_tol=options.cg_tol,
            learning_rate=options.learning_rate,
            unrolled=unrolled,
        )
        out = run(model, params)
        return out.params, (out.values, out.grad_norms, out.num_steps, out.status), None

    if box is not None:
        cg_steps = 10 * size if options.cg_num_steps is None else options.cg_num_steps
        solution, (values, grad_norms, count, status) = bounded_solve(
            closed_fun,
            params,
            args,
            jax.tree.map(jax.lax.stop_gradient, box),
            run=run,
            damping=options.damping,
            cg_num_steps=cg_steps if method == "newton_cg" else None,
            cg_tol=options.cg_tol,
            unrolled=unrolled,
        )
    elif unrolled:
        solution, (values, grad_norms, count, status), _ = solve(params, args)
    else:
        solve = implicit_adjoint(solve, closed_fun, dense=method == "newton")
        solution, (values, grad_norms, count, status) = solve(params, args)
    value = closed_fun(solution, *args)
    solution = jax.tree.map(lambda leaf, dtype: leaf.astype(dtype), solution, dtypes)
    return MinimizeResult(
        solution, value, values, grad_norms, count, status == Status.SUCCESS, status
    )
