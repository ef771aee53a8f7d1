"""``minimize``: repeat the step that minimises a local model, until the model is exact."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from gradjax._checks import (
    check_choice,
    check_finite_tree,
    check_int,
    check_scalar,
    check_scalar_fun,
    floating_tree,
)
from gradjax._loop import scan_loop, while_loop
from gradjax._status import Status
from gradjax.newton._adjoint import implicit_adjoint
from gradjax.newton._cg import matrix_free_model
from gradjax.newton._line_search import line_search
from gradjax.newton._model import Point, dense_model

PyTree = Any
METHODS = ("newton", "newton_cg", "gradient_descent")
ADJOINTS = ("implicit", "unrolled")
OPTIONS = {
    "newton": {"damping"},
    "newton_cg": {"damping", "maxiter", "cg_tol"},
    "gradient_descent": {"learning_rate"},
}
_RUNNING = -1


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


class _State(NamedTuple):
    point: Point
    status: jax.Array


def _check_options(method: str, adjoint: str, options: dict) -> dict:
    check_choice("method", method, METHODS)
    check_choice("adjoint", adjoint, ADJOINTS)
    unknown = set(options) - OPTIONS[method]
    if unknown:
        raise TypeError(
            f"unexpected options {sorted(unknown)} for method={method!r}; "
            f"allowed: {sorted(OPTIONS[method])}"
        )
    options = {"damping": 0.0, "maxiter": None, "cg_tol": 1e-5, **options}
    check_scalar("damping", options["damping"], low=0.0)
    if options["maxiter"] is not None:
        check_int("maxiter", options["maxiter"], 1)
    check_scalar("cg_tol", options["cg_tol"], low=0.0)
    if method == "gradient_descent":
        if options.get("learning_rate") is None:
            raise TypeError("learning_rate is required for method='gradient_descent'")
        check_scalar("learning_rate", options["learning_rate"], low=0.0, strict=True)
    return options


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
    **options,
) -> MinimizeResult:
    """Minimises ``fun`` by repeatedly minimising a local model of it.

    Each step builds the model ``m(Δ) = f + gᵀΔ + ½ΔᵀBΔ`` at the iterate and moves
    towards its minimiser ``Δ = -B⁻¹g``:

    * ``"newton"``: ``B = H + damping·I``, the dense Hessian (one ``jacfwd`` of
      ``value_and_grad`` gives ``f``, ``g`` and ``H`` together), solved by Cholesky.
    * ``"newton_cg"``: the same model solved matrix-free by CG on Hessian-vector products.
    * ``"gradient_descent"``: ``B = I/η`` (option ``learning_rate``).

    Safeguards: where ``H`` is not positive definite, dense Newton takes a step on
    the eigenvalue-magnitude model plus a step along the most negative curvature
    direction (Newton-CG: the direction of non-positive curvature CG meets), so the
    iterate leaves a saddle or maximum even from a point with ``g = 0`` (then the
    matrix-free methods look for negative curvature by CG on a fixed random vector).
    A backtracking (Armijo) line search on ``x + t·s + √t·d`` accepts only decreasing
    steps, so ``values`` never increases. Near the solution, where the Armijo test
    cannot resolve the decrease, a full step that does not increase ``‖g‖`` is
    accepted. ``SUCCESS`` means ``‖g‖ <= tol`` with no negative curvature found there.
    With ``damping > 0`` dense Newton's test is on ``H + damping·I``.

    The loop is a bounded ``lax.while_loop`` (``adjoint="implicit"``): it stops once
    every problem is done, also under ``jax.vmap``, so ``num_steps`` is a bound, not
    a cost. ``bfloat16``/``float16`` params are solved in float32 and returned in
    their own dtype.

    Gradients: with ``adjoint="implicit"`` (the default), ``jax.grad`` of the
    solution w.r.t. ``*args`` (and values ``fun`` closes over) goes through the
    optimality condition ``∇ₓf(x*, θ) = 0``: one linear solve with the Hessian at
    ``x*`` (dense for ``"newton"``, CG otherwise), memory independent of
    ``num_steps``; exact at a minimiser, approximate when ``status`` is not SUCCESS;
    the initial ``params`` get a zero gradient. ``adjoint="unrolled"``
    differentiates through every iteration of a fixed-length ``lax.scan``.

    Args:
      fun: ``fun(params, *args) -> scalar``.
      params: initial iterate, a pytree of floating arrays (finite, when concrete).
      *args: pytrees of arrays passed to ``fun`` (may be traced, batched by vmap,
        differentiated).
      method: ``"newton"`` (default), ``"newton_cg"`` or ``"gradient_descent"``.
      num_steps: the most steps to take (static).
      tol: success once the global gradient norm is ``<= tol``.
      adjoint: ``"implicit"`` (default) or ``"unrolled"``.
      **options: ``damping`` (Newton methods, default 0.0: added to the Hessian's
        diagonal); ``maxiter`` (CG iterations, default the number of parameters) and
        ``cg_tol`` (default 1e-5, relative CG residual) for ``"newton_cg"``;
        ``learning_rate`` (required) for ``"gradient_descent"``.

    Returns:
      A :class:`MinimizeResult`; failures are reported in ``status``, never raised.

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
    """
    options = _check_options(method, adjoint, options)
    num_steps = check_int("num_steps", num_steps, 0)
    check_scalar("tol", tol, low=0.0)
    params = floating_tree("params", params)
    check_finite_tree("params", params)
    args = jax.tree.map(jnp.asarray, args)
    dtypes = jax.tree.map(lambda leaf: leaf.dtype, params)
    params = jax.tree.map(lambda leaf: leaf.astype(_compute_dtype(leaf)), params)
    check_scalar_fun("fun", fun, params, *args)
    closed_fun, consts = jax.closure_convert(lambda p, *a: fun(p, *a), params, *args)
    args = (*args, *consts)
    unrolled = adjoint == "unrolled"

    def solve(params, args):
        if method == "newton":
            flat, unravel = ravel_pytree(params)
            model = dense_model(
                lambda x, *a: closed_fun(unravel(x), *a),
                args,
                options["damping"],
                unrolled=unrolled,
            )
            out = _iterate(model, flat, tol, num_steps, unrolled)
            curvature = out[-1]
            # The last Cholesky factor is the implicit adjoint's, when it is H's own.
            damping = options["damping"]
            undamped = isinstance(damping, (int, float)) and damping == 0
            factor = (curvature.chol, curvature.positive_definite) if undamped else None
            return unravel(out[0]), out[1:-1], factor
        size = sum(leaf.size for leaf in jax.tree.leaves(params))
        model = matrix_free_model(
            closed_fun,
            args,
            tol,
            newton=method == "newton_cg",
            damping=options["damping"],
            maxiter=size if options["maxiter"] is None else options["maxiter"],
            cg_tol=options["cg_tol"],
            learning_rate=options.get("learning_rate"),
            unrolled=unrolled,
        )
        out = _iterate(model, params, tol, num_steps, unrolled)
        return out[0], out[1:-1], None

    if unrolled:
        solution, (values, grad_norms, count, status), _ = solve(params, args)
    else:
        solve = implicit_adjoint(solve, closed_fun, dense=method == "newton")
        solution, (values, grad_norms, count, status) = solve(params, args)
    value = closed_fun(solution, *args)
    solution = jax.tree.map(lambda leaf, dtype: leaf.astype(dtype), solution, dtypes)
    return MinimizeResult(
        solution, value, values, grad_norms, count, status == Status.SUCCESS, status
    )


def _iterate(model, x0, tol, num_steps, unrolled):
    """Runs the loop; returns ``(x, values, grad_norms, num_steps, status, curvature)``."""

    def success(point: Point) -> jax.Array:
        return point.finite & (optax.tree.norm(point.grad) <= tol) & point.curvature_ok

    def step(state: _State) -> _State:
        point = state.point
        active = state.status == _RUNNING
        s, d, slope = model.step(point, optax.tree.norm(point.grad) <= tol)
        new, found = line_search(model, point, s, d, slope, active, unrolled=unrolled)
        status = jnp.where(
            ~found,
            Status.NO_DESCENT,
            jnp.where(
                ~new.finite, Status.NONFINITE, jnp.where(success(new), Status.SUCCESS, _RUNNING)
            ),
        ).astype(jnp.int32)
        keep = found & new.finite
        new = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, point)
        return _State(new, jnp.where(active, status, state.status))

    point = model.evaluate(x0, jnp.array(True))
    status = jnp.where(
        ~point.finite, Status.NONFINITE, jnp.where(success(point), Status.SUCCESS, _RUNNING)
    ).astype(jnp.int32)
    loop = scan_loop if unrolled else while_loop
    out = loop(
        step,
        _State(point, status),
        num_steps=num_steps,
        converged=lambda state: state.status != _RUNNING,
        record=lambda state: (state.point.value, optax.tree.norm(state.point.grad)),
    )
    final = jnp.where(out.state.status == _RUNNING, Status.MAX_STEPS, out.state.status)
    values, grad_norms = out.trace
    point = out.state.point
    return point.params, values, grad_norms, out.num_steps, final.astype(jnp.int32), point.curvature
