"""``least_squares``: Gauss-Newton and Levenberg-Marquardt, the local model of the residuals.

At ``x`` the residuals are replaced by their tangent, ``r(x + Δ) ≈ r + JΔ``, so the
cost ``½‖r‖²`` by the convex model ``m(Δ) = ½‖r + JΔ‖²``. Gauss-Newton minimises it
(``Δ = -J⁺r``) and checks the step with the line search of :func:`minimize`;
Levenberg-Marquardt minimises it inside a trust region, ``m(Δ) + ½λ‖DΔ‖²``, and
adapts ``λ`` to how well the model predicted the decrease.

Both run in the loop driver of :func:`minimize` (``gradjax._loop``), with its
statuses and its implicit adjoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from gradjax._checks import (
    all_finite,
    check_callable,
    check_choice,
    check_finite_tree,
    check_int,
    check_scalar,
    floating_tree,
)
from gradjax._loop import branch, scan_loop, while_loop
from gradjax._status import Status
from gradjax.newton._adjoint import implicit_adjoint
from gradjax.newton._bounds import (
    Box,
    bounded_implicit_adjoint,
    check_bounds,
    free_coordinates,
    project,
    projected_gradient_norm,
)
from gradjax.newton._line_search import LineSearch, line_search
from gradjax.newton._model import LocalModel, Point

PyTree = Any
METHODS = ("levenberg_marquardt", "gauss_newton")
ADJOINTS = ("implicit", "unrolled")
_RUNNING = -1
# A step is accepted when the cost falls by at least this fraction of the predicted
# decrease (MINPACK's 1e-4).
_ACCEPT = 1e-4
# The largest relative decrease the Gauss-Newton model predicts, ½‖Qᵀr‖² / ½‖r‖², below
# which the cost cannot be lowered beyond its rounding: SUCCESS.
_ROUNDING = 16
_STEADY = 64
_DENSE_ADJOINT_SIZE = 1024


class LeastSquaresResult(NamedTuple):
    """What :func:`least_squares` returns.

    Attributes:
      params: the final iterate, in the dtypes of the initial params.
      cost: ``½‖r(params)‖²``.
      residuals: ``r(params)``, the pytree ``residuals`` returns.
      values: (num_steps,) the cost after each step (flat after the last step taken).
      grad_norms: (num_steps,) ``‖Jᵀr‖`` after each step (with bounds, the projected
        gradient's norm).
      num_steps: int32, the steps actually taken.
      converged: bool, ``status == Status.SUCCESS``.
      status: int32, a :class:`Status` code.
    """

    params: PyTree
    cost: jax.Array
    residuals: PyTree
    values: jax.Array
    grad_norms: jax.Array
    num_steps: jax.Array
    converged: jax.Array
    status: jax.Array


class Linearisation(NamedTuple):
    """The residuals' tangent at one point, as the step needs it (nothing of size m, so
    the loop carries O(n²) per problem).

    ``column_norms`` are ``J``'s column norms (MINPACK's scaling ``D``); ``free`` marks
    the coordinates off the active set; ``r_factor`` is ``R`` with ``RᵀR = J_FᵀJ_F`` (plus
    a unit diagonal entry per bound coordinate) and ``qtr = Qᵀr``; ``stationary`` the
    rounding test of SUCCESS."""

    column_norms: jax.Array
    free: jax.Array
    r_factor: jax.Array
    qtr: jax.Array
    stationary: jax.Array


class _LMState(NamedTuple):
    point: Point
    damping: jax.Array
    growth: jax.Array
    scale: jax.Array
    status: jax.Array


def _compute_dtype(leaf: jax.Array) -> jnp.dtype:
    return jnp.float32 if jnp.finfo(leaf.dtype).bits < 32 else leaf.dtype


def _check_residuals(residuals: Callable, params: PyTree, args: tuple) -> None:
    check_callable("residuals", residuals)
    out = jax.eval_shape(residuals, params, *args)
    leaves = jax.tree.leaves(out)
    if not leaves or sum(leaf.size for leaf in leaves) == 0:
        raise ValueError("residuals must return at least one residual, got an empty output")
    for leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"residuals must return real floating arrays, got a leaf of dtype {leaf.dtype}"
            )


def linearise(
    fun: Callable, args: tuple, box: Box | None, size: int, num_residuals: int, unrolled: bool
):
    """``x -> Point`` for the cost ``½‖r‖²``: residuals and Jacobian from one ``jacfwd``
    (``jacrev`` when there are more parameters than residuals), then ``R`` and ``Qᵀr``.

    ``R`` comes from the Cholesky factor of ``J_FᵀJ_F`` (``R = Lᵀ``, ``Qᵀr = L⁻¹J_Fᵀr``)
    where that is accurate, ``κ(JᵀJ) <= 1/√ε`` by the factor's diagonal, and from a
    Householder QR of ``[J_F | r]`` where it is not (a branch that only the problems that
    need it take, also under ``vmap``): the QR's error grows with ``κ(J)``, the normal
    equations' with ``κ(J)²``. Either way ``r`` and ``Jᵀr`` are computed directly, so the
    solution the tests accept does not depend on the choice, only the step's quality.
    """
    jac = jax.jacfwd if size <= num_residuals else jax.jacrev
    eye = jnp.eye(size)

    def with_residual(x):
        r = fun(x, *args)
        return r, r

    def by_qr(operand):
        # J is formed again here (ill-conditioned problems pay a second Jacobian), so
        # that the common path never holds the m×n Jacobian in the loop.
        x, free = operand
        jacobian, r = jac(with_residual, has_aux=True)(x)
        # A bound coordinate's column is replaced by a unit row below J (residual 0):
        # it pins the step to zero and keeps R nonsingular.
        stacked = jnp.concatenate(
            [
                jnp.concatenate([jnp.where(free[None, :], jacobian, 0.0), r[:, None]], axis=1),
                jnp.concatenate(
                    [jnp.diag(jnp.where(free, 0.0, 1.0)), jnp.zeros((size, 1))], axis=1
                ).astype(r.dtype),
            ],
            axis=0,
        )
        upper = jnp.linalg.qr(stacked, mode="r")
        return upper[:size, :size], upper[:size, size]

    def evaluate(x, active=True):
        jacobian, r = jac(with_residual, has_aux=True)(x)
        # Everything after this line is n×n: J is only read by these products, so XLA
        # need not keep it.
        grad, gram, cost = jacobian.T @ r, jacobian.T @ jacobian, 0.5 * (r @ r)
        # A NaN or Inf in J shows on the Gram matrix's diagonal (its squares).
        finite = jnp.isfinite(cost) & all_finite(grad, gram)
        free = free_coordinates(x, grad, box)
        both = free[:, None] & free[None, :] & finite
        pinned = jnp.where(free, 0.0, 1.0).astype(x.dtype)
        chol = jnp.linalg.cholesky(jnp.where(both, gram, 0.0) + jnp.diag(pinned))
        diag = jnp.abs(jnp.diagonal(chol))
        eps = jnp.finfo(x.dtype).eps
        accurate = all_finite(chol) & (jnp.min(diag) ** 2 * eps**-0.5 >= jnp.max(diag) ** 2)
        chol = jnp.where(accurate, chol, eye.astype(x.dtype))
        free_grad = jnp.where(free & finite, grad, 0.0)
        from_cholesky = (
            chol.T,
            jax.scipy.linalg.solve_triangular(chol, free_grad, lower=True),
        )
        operand = (x, free)
        r_factor, qtr = branch(
            jnp.asarray(active) & finite & ~accurate,
            by_qr,
            operand,
            from_cholesky,
            unrolled=unrolled,
        )
        stationary = (qtr @ qtr) <= _ROUNDING * eps * (r @ r)
        column_norms = jnp.sqrt(jnp.where(free & finite, jnp.diagonal(gram), 0.0))
        curvature = Linearisation(column_norms, free, r_factor, qtr, stationary)
        return Point(x, cost, grad, finite, jnp.array(True), curvature)

    return evaluate


def _converged(point: Point, box: Box | None, tol) -> jax.Array:
    small = projected_gradient_norm(point.params, point.grad, box) <= tol
    return point.finite & (small | point.curvature.stationary)


def _damped_step(lin: Linearisation, damping, scale) -> jax.Array:
    """``Δ = argmin ½‖r + J_FΔ‖² + ½λ‖DΔ‖²``, by a QR of ``[R, -Qᵀr; √λD, 0]``.

    The ``n×n`` factor ``R`` of ``J_F`` stands for ``J``, so the damped problem costs a
    ``2n×n`` QR: the condition number is that of ``J``, not of ``JᵀJ``. Bound
    coordinates have a unit row in ``R`` and a zero right-hand side: a zero step.
    """
    size = lin.qtr.size
    diag = jnp.sqrt(damping) * jnp.where(lin.free, scale, 1.0)
    top = jnp.concatenate([lin.r_factor, -lin.qtr[:, None]], axis=1)
    bottom = jnp.concatenate([jnp.diag(diag), jnp.zeros((size, 1), diag.dtype)], axis=1)
    upper = jnp.linalg.qr(jnp.concatenate([top, bottom], axis=0), mode="r")
    return jax.scipy.linalg.solve_triangular(upper[:size, :size], upper[:size, size])


def _levenberg_marquardt(evaluate, x0, box, tol, num_steps, unrolled):
    """Nielsen's damping update on MINPACK's scaled model; returns ``(Point, trace, count,
    status)``."""
    eps = jnp.finfo(x0.dtype).eps

    def step(state: _LMState) -> _LMState:
        point, lin = state.point, state.point.curvature
        active = state.status == _RUNNING
        delta = _damped_step(lin, state.damping, state.scale)
        trial_x = project(point.params + delta, box)
        move = trial_x - point.params
        trial = evaluate(trial_x, active)
        # ‖J·move‖ = ‖R·move‖: move is zero on the bound coordinates.
        jmove = lin.r_factor @ move
        predicted = -(point.grad @ move) - 0.5 * (jmove @ jmove)
        actual = point.value - trial.value
        ratio = actual / jnp.where(predicted > 0, predicted, 1.0)
        residual_finite = jnp.isfinite(trial.value)
        # Where the predicted decrease is below the rounding of the cost, ρ is noise: the
        # step is taken if it does not increase ‖Jᵀr‖ (as minimize's line search does).
        steady = (
            (predicted <= _STEADY * eps * point.value)
            & trial.finite
            & (jnp.linalg.norm(trial.grad) <= jnp.linalg.norm(point.grad))
        )
        ratio = jnp.where(steady, 1.0, ratio)
        accepted = residual_finite & (((predicted > 0) & (ratio > _ACCEPT)) | steady)
        # Nielsen (1999): shrink λ by the model's quality, or grow it geometrically.
        shrink = jnp.maximum(1 / 3, 1 - (2 * ratio - 1) ** 3)
        damping = jnp.where(accepted, state.damping * shrink, state.damping * state.growth)
        growth = jnp.where(accepted, 2.0, 2 * state.growth).astype(state.growth.dtype)
        bad_jacobian = accepted & ~trial.finite
        keep = accepted & trial.finite
        new = optax.tree.where(keep, trial, point)
        column_norms = trial.curvature.column_norms
        scale = jnp.where(keep, jnp.maximum(state.scale, column_norms), state.scale)
        tiny_step = jnp.linalg.norm(state.scale * move) <= eps * jnp.linalg.norm(
            state.scale * point.params
        )
        stuck = ~accepted & (tiny_step | ~jnp.isfinite(damping))
        # Stuck below the rounding of x: a stationary point to rounding when r is
        # orthogonal to every free column of J to √ε (MINPACK's gtol measure, which
        # holds where J is rank deficient, as at a local minimum of a square system).
        norms = lin.column_norms * jnp.sqrt(2 * point.value)
        cosines = jnp.abs(point.grad) / jnp.where(norms > 0, norms, 1.0)
        # Or when the Gauss-Newton model promises less than a relative √ε of decrease.
        flat = (jnp.max(jnp.where(lin.free, cosines, 0.0)) <= jnp.sqrt(eps)) | (
            (lin.qtr @ lin.qtr) <= jnp.sqrt(eps) * 2 * point.value
        )
        status = jnp.where(
            bad_jacobian,
            Status.NONFINITE,
            jnp.where(
                (keep & _converged(trial, box, tol)) | (stuck & flat),
                Status.SUCCESS,
                jnp.where(stuck, Status.NO_DESCENT, _RUNNING),
            ),
        ).astype(jnp.int32)
        return _LMState(
            new,
            jnp.where(active, damping, state.damping),
            jnp.where(active, growth, state.growth),
            scale,
            jnp.where(active, status, state.status),
        )

    point = evaluate(x0)
    scale = point.curvature.column_norms
    scale = jnp.where(jnp.isfinite(scale) & (scale > 0), scale, 1.0)
    init = _LMState(
        point,
        jnp.asarray(1e-3, x0.dtype),
        jnp.asarray(2.0, x0.dtype),
        scale,
        _initial_status(point, box, tol),
    )
    return _run(step, init, box, num_steps, unrolled)


def _gauss_newton(evaluate, cost, x0, box, tol, num_steps, unrolled):
    """Gauss-Newton steps checked by :func:`minimize`'s line search."""

    def model_step(point, small_grad):
        del small_grad
        lin = point.curvature
        # Δ = -R⁺Qᵀr: the least-squares solution even where J_F is rank deficient.
        s = jnp.linalg.lstsq(lin.r_factor, -lin.qtr)[0]
        s = jnp.where(lin.free, s, 0.0)
        return s, jnp.zeros_like(s), point.grad @ s

    model = LocalModel(
        lambda x, active: evaluate(project(x, box), active),
        lambda x: cost(project(x, box)),
        model_step,
    )

    def step(state: _LMState) -> _LMState:
        point = state.point
        active = state.status == _RUNNING
        s, d, slope = model.step(point, jnp.array(False))
        new, found = line_search(
            model, point, s, d, slope, active, constants=LineSearch(), unrolled=unrolled
        )
        new = new._replace(params=project(new.params, box))
        status = jnp.where(
            ~found | (slope >= 0),
            Status.NO_DESCENT,
            jnp.where(
                ~new.finite,
                Status.NONFINITE,
                jnp.where(_converged(new, box, tol), Status.SUCCESS, _RUNNING),
            ),
        ).astype(jnp.int32)
        keep = found & new.finite
        new = optax.tree.where(keep, new, point)
        return state._replace(point=new, status=jnp.where(active, status, state.status))

    point = evaluate(x0)
    one = jnp.ones([], x0.dtype)
    init = _LMState(point, one, one, jnp.ones_like(x0), _initial_status(point, box, tol))
    return _run(step, init, box, num_steps, unrolled)


def _initial_status(point: Point, box: Box | None, tol) -> jax.Array:
    return jnp.where(
        ~point.finite,
        Status.NONFINITE,
        jnp.where(_converged(point, box, tol), Status.SUCCESS, _RUNNING),
    ).astype(jnp.int32)


def _run(step, init, box, num_steps, unrolled):
    loop = scan_loop if unrolled else while_loop

    def record(state):
        point = state.point
        return point.value, projected_gradient_norm(point.params, point.grad, box)

    out = loop(
        step,
        init,
        num_steps=num_steps,
        converged=lambda state: state.status != _RUNNING,
        record=record,
    )
    status = jnp.where(out.state.status == _RUNNING, Status.MAX_STEPS, out.state.status)
    return out.state.point, out.trace, out.num_steps, status.astype(jnp.int32)


def least_squares(
    residuals: Callable,
    params: PyTree,
    *args,
    method: str = "levenberg_marquardt",
    num_steps: int = 100,
    tol: float = 1e-8,
    adjoint: str = "implicit",
    bounds: tuple[PyTree, PyTree] | None = None,
) -> LeastSquaresResult:
    """Minimises ``½‖r(params, *args)‖²`` by repeatedly minimising the residuals' tangent model.

    At ``x``, with ``J = ∂r/∂x`` (``jax.jacfwd``, or ``jax.jacrev`` when there are more
    parameters than residuals; once per step), the model is
    ``m(Δ) = ½‖r + JΔ‖²``:

    * ``"levenberg_marquardt"`` (default): ``Δ = argmin m(Δ) + ½λ‖DΔ‖²`` with ``D`` the
      running maximum of ``J``'s column norms (MINPACK's scaling). A step is taken when
      the cost falls by at least 1e-4 of the model's predicted decrease; ``λ`` is then
      multiplied by ``max(1/3, 1 - (2ρ - 1)³)`` (``ρ`` = actual / predicted), else by
      ``ν`` with ``ν`` doubling on each rejection (Nielsen's update). A rejected trial
      costs a step.
    * ``"gauss_newton"``: ``Δ = -J⁺r``, the model's minimiser, along which
      :func:`minimize`'s backtracking line search picks the step.

    The solve factors ``J = QR`` once per step, then the damped system by a QR of the
    small ``[R; √λD]``. ``R`` is the Cholesky factor of ``JᵀJ`` where ``κ(JᵀJ) <= 1/√ε``
    (cheap, and accurate there), and a Householder QR of ``[J | r]`` where ``J`` is
    worse conditioned (as on NIST's higher-difficulty problems, where the normal
    equations lose twice the digits); under ``vmap`` only a batch with such a problem
    runs the QR. ``r`` and ``Jᵀr`` are always formed directly, so the choice changes the
    step, never the tests of convergence.

    ``status`` is ``SUCCESS`` when ``‖Jᵀr‖ <= tol``, or when even the Gauss-Newton
    model's best decrease ``½‖Qᵀr‖²`` is below the rounding of the cost (16ε·cost), the
    relative test that ends fits with a non-zero residual; ``MAX_STEPS``; ``NONFINITE``
    (the residuals or Jacobian are not finite at the start, or the Jacobian at an
    accepted point: the last finite iterate is returned; a trial with non-finite
    residuals is rejected like one that goes uphill); ``NO_DESCENT`` (no decrease along a
    step below the rounding of ``x``, or, for Gauss-Newton, the line search failed).
    The loop stops once every problem is done, also under ``jax.vmap``.

    ``bounds=(lower, upper)``: projected Levenberg-Marquardt / Gauss-Newton with an
    active set (Bertsekas 1982). Each trial point is projected onto the box (the
    iterate never leaves it; a start outside is projected first); coordinates on a bound
    with the gradient pointing out of the box keep a zero step, the others take the
    model's step on the reduced problem; ``SUCCESS`` at ``‖x - P(x - Jᵀr)‖ <= tol``.

    Gradients: ``adjoint="implicit"`` (default) differentiates the solution w.r.t.
    ``*args`` (and values ``residuals`` closes over) through ``Jᵀr = 0``, with the true
    Hessian of ``½‖r‖²`` at ``x*`` (``JᵀJ + Σ rᵢ∇²rᵢ``; the Gauss-Newton matrix alone
    would be wrong for non-zero residuals), dense up to 1024 parameters and by CG on
    Hessian-vector products above. With bounds the free coordinates solve the reduced
    condition and the bound ones get zero; the bounds themselves are not differentiated.
    ``adjoint="unrolled"`` differentiates through a fixed-length ``lax.scan`` of the steps.

    Args:
      residuals: ``residuals(params, *args) -> pytree`` of floating arrays ``r``.
      params: initial iterate, a pytree of floating arrays (finite, when concrete).
      *args: pytrees of arrays passed to ``residuals`` (may be traced, batched,
        differentiated).
      method: ``"levenberg_marquardt"`` (default) or ``"gauss_newton"``.
      num_steps: the most steps to take (static, ``>= 1``).
      tol: success once ``‖Jᵀr‖ <= tol`` (the projected gradient with bounds).
      adjoint: ``"implicit"`` (default) or ``"unrolled"``.
      bounds: ``None`` or ``(lower, upper)``, pytrees like ``params`` (leaves broadcast
        to the params' shapes), ``±inf`` for no bound, ``lower <= upper``.

    Returns:
      A :class:`LeastSquaresResult`; failures are reported in ``status``, never raised.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import newton
      >>> t = jnp.linspace(0.0, 1.0, 5)
      >>> y = 2.0 * jnp.exp(-1.5 * t)
      >>> fit = newton.least_squares(lambda p, t, y: p[0] * jnp.exp(p[1] * t) - y,
      ...                            jnp.array([1.0, 0.0]), t, y)
      >>> newton.Status(int(fit.status)).name, fit.params.round(4)
      ('SUCCESS', Array([ 2. , -1.5], dtype=float32))
      >>> box = newton.least_squares(lambda p, t, y: p[0] * jnp.exp(p[1] * t) - y,
      ...                            jnp.array([1.0, 0.0]), t, y,
      ...                            bounds=(jnp.array([0.0, -1.0]), jnp.array([3.0, 0.0])))
      >>> float(box.params[1])
      -1.0

    References:
      Moré, "The Levenberg-Marquardt algorithm: implementation and theory", Lecture
      Notes in Mathematics 630 (1978). Nielsen, "Damping parameter in Marquardt's
      method", IMM DTU report (1999). Moré, Garbow & Hillstrom, "Testing unconstrained
      optimization software", ACM TOMS 7 (1981). Bertsekas, "Projected Newton methods
      for optimization problems with simple constraints", SIAM J. Control Optim. (1982).
    """
    check_callable("residuals", residuals)
    check_choice("method", method, METHODS)
    check_choice("adjoint", adjoint, ADJOINTS)
    num_steps = check_int("num_steps", num_steps, 1)
    check_scalar("tol", tol, low=0.0)
    params = floating_tree("params", params)
    check_finite_tree("params", params)
    args = jax.tree.map(jnp.asarray, args)
    dtypes = jax.tree.map(lambda leaf: leaf.dtype, params)
    params = jax.tree.map(lambda leaf: leaf.astype(_compute_dtype(leaf)), params)
    _check_residuals(residuals, params, args)
    box = check_bounds(bounds, params)
    if box is not None:
        box = jax.tree.map(jax.lax.stop_gradient, box)
    closed, consts = jax.closure_convert(lambda p, *a: residuals(p, *a), params, *args)
    args = (*args, *consts)
    flat0, unravel = ravel_pytree(params)
    size = flat0.size

    def flat_residuals(x, *a):
        r = ravel_pytree(closed(unravel(x), *a))[0]
        return r.astype(jnp.promote_types(r.dtype, x.dtype))

    def cost(x, *a):
        r = flat_residuals(x, *a)
        return 0.5 * (r @ r)

    num_residuals = jax.eval_shape(flat_residuals, flat0, *args).shape[0]
    unrolled = adjoint == "unrolled"

    def solve(x0, args, box=box):
        x0 = project(x0, box)
        evaluate = linearise(flat_residuals, args, box, size, num_residuals, unrolled)
        if method == "levenberg_marquardt":
            point, trace, count, status = _levenberg_marquardt(
                evaluate, x0, box, tol, num_steps, unrolled
            )
        else:
            point, trace, count, status = _gauss_newton(
                evaluate, lambda x: cost(x, *args), x0, box, tol, num_steps, unrolled
            )
        aux = (*trace, count, status)
        return point.params, aux, point.curvature.free

    if unrolled:
        solution, (values, grad_norms, count, status), _ = solve(flat0, args)
    elif box is None:
        solved = implicit_adjoint(
            lambda x0, a: (*solve(x0, a)[:2], None), cost, dense=size <= _DENSE_ADJOINT_SIZE
        )
        solution, (values, grad_norms, count, status) = solved(flat0, args)
    else:
        solved = bounded_implicit_adjoint(solve, cost)
        solution, (values, grad_norms, count, status) = solved(flat0, args, box)
    final = closed(unravel(solution), *args)
    flat_final = ravel_pytree(final)[0]
    value = 0.5 * (flat_final @ flat_final)
    solution = jax.tree.map(lambda leaf, dtype: leaf.astype(dtype), unravel(solution), dtypes)
    return LeastSquaresResult(
        solution, value, final, values, grad_norms, count, status == Status.SUCCESS, status
    )
