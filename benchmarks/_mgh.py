"""The Moré–Garbow–Hillstrom (1981) unconstrained test problems, as jnp functions.

Each :class:`Problem` is a sum of squares ``f(x) = Σ fᵢ(x)²`` with the paper's standard
start and its listed minima ``f*`` (more than one where the paper lists local minima
that solvers reach from the standard start). Written from the paper's definitions;
the data (``y``, ``u``) are the paper's. ``solved`` is the rule of the tests and the
``newton_testset`` benchmark. Evaluate under ``jax.enable_x64(True)``: the problems are
posed in float64.

Reference:
  J. J. Moré, B. S. Garbow, K. E. Hillstrom, "Testing unconstrained optimization
  software", ACM TOMS 7(1), 1981, 17–41.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Problem(NamedTuple):
    """A test problem: ``residuals(x) -> (m,)``, the start, the known minima and, where
    the paper states it, a minimiser."""

    name: str
    residuals: Callable
    x0: tuple
    f_star: tuple
    x_star: tuple | None = None

    def fun(self, x):
        r = self.residuals(x)
        return jnp.sum(r * r)


def solved(value: float, f_star: tuple) -> bool:
    """``f`` within ``1e-4·|f*| + 1e-8`` of one of the listed minima (they have 6 digits)."""
    return any(abs(float(value) - f) <= 1e-4 * abs(f) + 1e-8 for f in f_star)


def rosenbrock(x):
    return jnp.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])


def freudenstein_roth(x):
    return jnp.stack(
        [
            -13 + x[0] + ((5 - x[1]) * x[1] - 2) * x[1],
            -29 + x[0] + ((x[1] + 1) * x[1] - 14) * x[1],
        ]
    )


def powell_badly_scaled(x):
    return jnp.stack([1e4 * x[0] * x[1] - 1, jnp.exp(-x[0]) + jnp.exp(-x[1]) - 1.0001])


def brown_badly_scaled(x):
    return jnp.stack([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2])


def beale(x):
    y = np.array([1.5, 2.25, 2.625])
    i = np.arange(1.0, 4.0)
    return y - x[0] * (1 - x[1] ** i)


def jennrich_sampson(x):
    i = np.arange(1.0, 11.0)
    return 2 + 2 * i - (jnp.exp(i * x[0]) + jnp.exp(i * x[1]))


def helical_valley(x):
    theta = jnp.arctan(x[1] / x[0]) / (2 * np.pi) + jnp.where(x[0] < 0, 0.5, 0.0)
    return jnp.stack([10 * (x[2] - 10 * theta), 10 * (jnp.sqrt(x[0] ** 2 + x[1] ** 2) - 1), x[2]])


# fmt: off
BARD_Y = np.array([
    0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10,
    4.39
])
# fmt: on


def bard(x):
    u = np.arange(1.0, 16.0)
    v = 16 - u
    w = np.minimum(u, v)
    return BARD_Y - (x[0] + u / (v * x[1] + w * x[2]))


# fmt: off
GAUSSIAN_Y = np.array([
    0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989, 0.3521, 0.2420, 0.1295,
    0.0540, 0.0175, 0.0044, 0.0009
])
# fmt: on


def gaussian(x):
    t = (8 - np.arange(1.0, 16.0)) / 2
    return x[0] * jnp.exp(-x[1] * (t - x[2]) ** 2 / 2) - GAUSSIAN_Y


# fmt: off
MEYER_Y = np.array([
    34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005, 5147, 4427,
    3820, 3307, 2872
], float)
# fmt: on


def meyer(x):
    t = 45 + 5 * np.arange(1.0, 17.0)
    return x[0] * jnp.exp(x[1] / (t + x[2])) - MEYER_Y


def gulf_research(x):
    t = np.arange(1.0, 100.0) / 100
    y = 25 + (-50 * np.log(t)) ** (2 / 3)
    return jnp.exp(-(jnp.abs(y - x[1]) ** x[2]) / x[0]) - t


def box_3d(x):
    t = 0.1 * np.arange(1.0, 11.0)
    return jnp.exp(-t * x[0]) - jnp.exp(-t * x[1]) - x[2] * (np.exp(-t) - np.exp(-10 * t))


def powell_singular(x):
    return jnp.stack(
        [
            x[0] + 10 * x[1],
            np.sqrt(5) * (x[2] - x[3]),
            (x[1] - 2 * x[2]) ** 2,
            np.sqrt(10) * (x[0] - x[3]) ** 2,
        ]
    )


def wood(x):
    return jnp.stack(
        [
            10 * (x[1] - x[0] ** 2),
            1 - x[0],
            np.sqrt(90) * (x[3] - x[2] ** 2),
            1 - x[2],
            np.sqrt(10) * (x[1] + x[3] - 2),
            (x[1] - x[3]) / np.sqrt(10),
        ]
    )


KOWALIK_Y = np.array(
    [0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246]
)
KOWALIK_U = np.array([4, 2, 1, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])


def kowalik_osborne(x):
    u = KOWALIK_U
    return KOWALIK_Y - x[0] * (u**2 + u * x[1]) / (u**2 + u * x[2] + x[3])


def brown_dennis(x):
    t = np.arange(1.0, 21.0) / 5
    return (x[0] + t * x[1] - np.exp(t)) ** 2 + (x[2] + x[3] * np.sin(t) - np.cos(t)) ** 2


# fmt: off
OSBORNE1_Y = np.array([
    0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751, 0.718,
    0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490, 0.478, 0.467,
    0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406
])
# fmt: on


def osborne_1(x):
    t = 10 * np.arange(33.0)
    return OSBORNE1_Y - (x[0] + x[1] * jnp.exp(-t * x[3]) + x[2] * jnp.exp(-t * x[4]))


def biggs_exp6(x):
    t = 0.1 * np.arange(1.0, 14.0)
    y = np.exp(-t) - 5 * np.exp(-10 * t) + 3 * np.exp(-4 * t)
    return x[2] * jnp.exp(-t * x[0]) - x[3] * jnp.exp(-t * x[1]) + x[5] * jnp.exp(-t * x[4]) - y


# fmt: off
OSBORNE2_Y = np.array([
    1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786, 0.725, 0.746, 0.679,
    0.608, 0.655, 0.616, 0.606, 0.602, 0.626, 0.651, 0.724, 0.649, 0.649, 0.694, 0.644,
    0.624, 0.661, 0.612, 0.558, 0.533, 0.495, 0.500, 0.423, 0.395, 0.375, 0.372, 0.391,
    0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653, 0.672, 0.708, 0.633, 0.668,
    0.645, 0.632, 0.591, 0.559, 0.597, 0.625, 0.739, 0.710, 0.729, 0.720, 0.636, 0.581,
    0.428, 0.292, 0.162, 0.098, 0.054
])
# fmt: on


def osborne_2(x):
    t = np.arange(65.0) / 10
    model = (
        x[0] * jnp.exp(-t * x[4])
        + x[1] * jnp.exp(-((t - x[8]) ** 2) * x[5])
        + x[2] * jnp.exp(-((t - x[9]) ** 2) * x[6])
        + x[3] * jnp.exp(-((t - x[10]) ** 2) * x[7])
    )
    return OSBORNE2_Y - model


def watson(x):
    n = x.shape[0]
    t = np.arange(1.0, 30.0) / 29
    j = np.arange(n)
    powers = t[:, None] ** j[None, :]  # t^(j), j = 0..n-1
    first = powers[:, : n - 1] @ (j[1:] * x[1:])
    second = powers @ x
    return jnp.concatenate([first - second**2 - 1, jnp.stack([x[0], x[1] - x[0] ** 2 - 1])])


def extended_rosenbrock(x):
    odd, even = x[0::2], x[1::2]
    return jnp.concatenate([10 * (even - odd**2), 1 - odd])


def extended_powell(x):
    a, b, c, d = x[0::4], x[1::4], x[2::4], x[3::4]
    return jnp.concatenate(
        [a + 10 * b, np.sqrt(5) * (c - d), (b - 2 * c) ** 2, np.sqrt(10) * (a - d) ** 2]
    )


def penalty_1(x):
    return jnp.concatenate([np.sqrt(1e-5) * (x - 1), jnp.stack([x @ x - 0.25])])


def penalty_2(x):
    n = x.shape[0]
    a = np.sqrt(1e-5)
    i = np.arange(2.0, n + 1)
    y = np.exp(i / 10) + np.exp((i - 1) / 10)
    middle = a * (jnp.exp(x[1:] / 10) + jnp.exp(x[:-1] / 10) - y)
    tail = a * (jnp.exp(x[1:] / 10) - np.exp(-1 / 10))
    weights = n - np.arange(n)
    return jnp.concatenate([jnp.stack([x[0] - 0.2]), middle, tail, jnp.stack([weights @ x**2 - 1])])


def variably_dimensioned(x):
    j = np.arange(1.0, x.shape[0] + 1)
    s = j @ (x - 1)
    return jnp.concatenate([x - 1, jnp.stack([s, s**2])])


def trigonometric(x):
    n = x.shape[0]
    i = np.arange(1.0, n + 1)
    return n - jnp.sum(jnp.cos(x)) + i * (1 - jnp.cos(x)) - jnp.sin(x)


def brown_almost_linear(x):
    n = x.shape[0]
    return jnp.concatenate([x[:-1] + jnp.sum(x) - (n + 1), jnp.stack([jnp.prod(x) - 1])])


def _grid(n):
    h = 1 / (n + 1)
    return h, h * np.arange(1.0, n + 1)


def discrete_boundary_value(x):
    h, t = _grid(x.shape[0])
    padded = jnp.concatenate([jnp.zeros(1), x, jnp.zeros(1)])
    return 2 * x - padded[:-2] - padded[2:] + h**2 * (x + t + 1) ** 3 / 2


def discrete_integral_equation(x):
    n = x.shape[0]
    h, t = _grid(n)
    cube = (x + t + 1) ** 3
    lower = np.tril(np.ones((n, n)))  # j <= i
    upper = 1 - lower  # j > i
    inner = (1 - t) * (lower @ (t * cube)) + t * (upper @ ((1 - t) * cube))
    return x + h * inner / 2


def broyden_tridiagonal(x):
    padded = jnp.concatenate([jnp.zeros(1), x, jnp.zeros(1)])
    return (3 - 2 * x) * x - padded[:-2] - 2 * padded[2:] + 1


def broyden_banded(x):
    n = x.shape[0]
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    band = ((j >= i - 5) & (j <= i + 1) & (j != i)).astype(float)
    return x * (2 + 5 * x**2) + 1 - band @ (x * (1 + x))


def linear_full_rank(x, m=20):
    n = x.shape[0]
    s = 2 / m * jnp.sum(x)
    return jnp.concatenate([x - s - 1, jnp.full(m - n, -s - 1)])


def linear_rank_1(x, m=20):
    j = np.arange(1.0, x.shape[0] + 1)
    return np.arange(1.0, m + 1) * (j @ x) - 1


def linear_rank_1_zero(x, m=20):
    n = x.shape[0]
    j = np.arange(2.0, n)
    inner = j @ x[1:-1]
    middle = np.arange(1.0, m - 1) * inner - 1  # i - 1 for i = 2..m-1
    return jnp.concatenate([jnp.array([-1.0]), middle, jnp.array([-1.0])])


def chebyquad(x):
    n = x.shape[0]
    y = 2 * x - 1  # the shifted Chebyshev polynomials on [0, 1]
    t_prev, t_cur = jnp.ones_like(y), y
    rows = [jnp.mean(t_cur)]
    for _ in range(2, n + 1):
        t_prev, t_cur = t_cur, 2 * y * t_cur - t_prev
        rows.append(jnp.mean(t_cur))
    integrals = np.array([-1 / (i * i - 1) if i % 2 == 0 else 0.0 for i in range(1, n + 1)])
    return jnp.stack(rows) - integrals


def _n(value, n):
    return tuple(float(value) for _ in range(n))


_T10 = tuple(float(t * (t - 1)) for t in _grid(10)[1])

PROBLEMS = (
    Problem("rosenbrock", rosenbrock, (-1.2, 1.0), (0.0,), (1.0, 1.0)),
    Problem("freudenstein_roth", freudenstein_roth, (0.5, -2.0), (0.0, 48.9842), (5.0, 4.0)),
    Problem("powell_badly_scaled", powell_badly_scaled, (0.0, 1.0), (0.0,)),
    Problem("brown_badly_scaled", brown_badly_scaled, (1.0, 1.0), (0.0,), (1e6, 2e-6)),
    Problem("beale", beale, (1.0, 1.0), (0.0,), (3.0, 0.5)),
    Problem("jennrich_sampson", jennrich_sampson, (0.3, 0.4), (124.362,)),
    Problem("helical_valley", helical_valley, (-1.0, 0.0, 0.0), (0.0,), (1.0, 0.0, 0.0)),
    Problem("bard", bard, (1.0, 1.0, 1.0), (8.21487e-3, 17.4286)),
    Problem("gaussian", gaussian, (0.4, 1.0, 0.0), (1.12793e-8,)),
    Problem("meyer", meyer, (0.02, 4000.0, 250.0), (87.9458,)),
    Problem("gulf_research", gulf_research, (5.0, 2.5, 0.15), (0.0,), (50.0, 25.0, 1.5)),
    Problem("box_3d", box_3d, (0.0, 10.0, 20.0), (0.0,), (1.0, 10.0, 1.0)),
    Problem("powell_singular", powell_singular, (3.0, -1.0, 0.0, 1.0), (0.0,), _n(0, 4)),
    Problem("wood", wood, (-3.0, -1.0, -3.0, -1.0), (0.0,), _n(1, 4)),
    Problem("kowalik_osborne", kowalik_osborne, (0.25, 0.39, 0.415, 0.39),
            (3.07505e-4, 1.02734e-3)),
    Problem("brown_dennis", brown_dennis, (25.0, 5.0, -5.0, -1.0), (85822.2,)),
    Problem("osborne_1", osborne_1, (0.5, 1.5, -1.0, 0.01, 0.02), (5.46489e-5,)),
    Problem("biggs_exp6", biggs_exp6, (1.0, 2.0, 1.0, 1.0, 1.0, 1.0), (0.0, 5.65565e-3),
            (1.0, 10.0, 1.0, 5.0, 4.0, 3.0)),
    Problem("watson", watson, _n(0, 6), (2.28767e-3,)),
    Problem("osborne_2", osborne_2, (1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5),
            (4.01377e-2,)),
    Problem("extended_rosenbrock", extended_rosenbrock, (-1.2, 1.0) * 5, (0.0,), _n(1, 10)),
    Problem("extended_powell", extended_powell, (3.0, -1.0, 0.0, 1.0) * 2, (0.0,), _n(0, 8)),
    Problem("penalty_1", penalty_1, tuple(float(j) for j in range(1, 11)), (7.08765e-5,)),
    Problem("penalty_2", penalty_2, _n(0.5, 10), (2.93660e-4,)),
    Problem("variably_dimensioned", variably_dimensioned,
            tuple(1 - j / 10 for j in range(1, 11)), (0.0,), _n(1, 10)),
    Problem("trigonometric", trigonometric, _n(0.1, 10), (0.0, 2.79506e-5)),
    Problem("brown_almost_linear", brown_almost_linear, _n(0.5, 10), (0.0, 1.0), _n(1, 10)),
    Problem("discrete_boundary_value", discrete_boundary_value, _T10, (0.0,)),
    Problem("discrete_integral_equation", discrete_integral_equation, _T10, (0.0,)),
    Problem("broyden_tridiagonal", broyden_tridiagonal, _n(-1, 10), (0.0,)),
    Problem("broyden_banded", broyden_banded, _n(-1, 10), (0.0,)),
    Problem("linear_full_rank", linear_full_rank, _n(1, 10), (10.0,), _n(-1, 10)),
    Problem("linear_rank_1", linear_rank_1, _n(1, 10), (20 * 19 / (2 * 41),)),
    Problem("linear_rank_1_zero", linear_rank_1_zero, _n(1, 10), ((400 + 60 - 6) / (2 * 37),)),
    Problem("chebyquad", chebyquad, tuple(j / 11 for j in range(1, 11)), (6.50395e-3, 4.77271e-3)),
)  # fmt: skip


def by_dimension(problems=PROBLEMS) -> dict[int, list[Problem]]:
    """The problems grouped by their number of parameters."""
    groups: dict[int, list[Problem]] = {}
    for problem in problems:
        groups.setdefault(len(problem.x0), []).append(problem)
    return groups


def switched(problems: list[Problem]) -> Callable:
    """``f(x, index)``: the ``index``-th problem's objective, by ``lax.switch``.

    Problems of one dimension share one compiled solver this way: the index is a
    traced argument, and only its branch runs.
    """
    branches = [problem.fun for problem in problems]
    return lambda x, index: jax.lax.switch(index, branches, x)


class Outcome(NamedTuple):
    """One solver's result on one problem (``seconds``: the solve, compile excluded)."""

    value: float
    num_steps: int
    status: int
    solved: bool
    seconds: float


def run_gradjax(method: str, problems=PROBLEMS, *, num_steps: int = 200, tol: float = 1e-8):
    """``({name: Outcome}, {n: compile seconds})`` of ``gradjax.newton.minimize`` from each
    standard start (float64).

    One compiled solver per dimension (:func:`switched`); the iterates are those of
    one problem at a time.
    """
    from gradjax import newton

    outcomes, compile_seconds = {}, {}
    with jax.enable_x64(True):
        for n, group in by_dimension(problems).items():
            fun = switched(group)
            solve = jax.jit(
                lambda x0, index, fun=fun: newton.minimize(
                    fun, x0, index, method=method, num_steps=num_steps, tol=tol
                )
            )
            start = time.perf_counter()
            solve = solve.lower(jnp.zeros(n), jnp.int32(0)).compile()
            compile_seconds[n] = time.perf_counter() - start
            for index, problem in enumerate(group):
                x0 = jnp.asarray(problem.x0, jnp.float64)
                start = time.perf_counter()
                out = jax.block_until_ready(solve(x0, jnp.int32(index)))
                seconds = time.perf_counter() - start
                value = float(out.value)
                outcomes[problem.name] = Outcome(
                    value,
                    int(out.num_steps),
                    int(out.status),
                    solved(value, problem.f_star),
                    seconds,
                )
    return outcomes, compile_seconds


def run_optimistix_bfgs(problems=PROBLEMS, *, num_steps: int = 200, tol: float = 1e-8):
    """``({name: Outcome}, {name: compile seconds})`` of ``optimistix.BFGS`` (rtol = atol =
    tol), one compile per problem."""
    import optimistix as optx

    outcomes, compile_seconds = {}, {}
    with jax.enable_x64(True):
        for problem in problems:
            solver = optx.BFGS(rtol=tol, atol=tol)
            solve = jax.jit(
                lambda x0, fun=problem.fun, solver=solver: optx.minimise(
                    lambda x, _: fun(x), solver, x0, max_steps=num_steps, throw=False
                )
            )
            x0 = jnp.asarray(problem.x0, jnp.float64)
            start = time.perf_counter()
            solve = solve.lower(x0).compile()
            compile_seconds[problem.name] = time.perf_counter() - start
            start = time.perf_counter()
            out = jax.block_until_ready(solve(x0))
            seconds = time.perf_counter() - start
            value = float(problem.fun(out.value))
            success = out.result == optx.RESULTS.successful
            outcomes[problem.name] = Outcome(
                value,
                int(out.stats["num_steps"]),
                0 if bool(success) else 1,
                solved(value, problem.f_star),
                seconds,
            )
    return outcomes, compile_seconds


def run_scipy(method: str, problems=PROBLEMS, *, num_steps: int = 200, tol: float = 1e-8):
    """``{name: Outcome}`` of ``scipy.optimize.minimize`` (``trust-exact``, ``trust-ncg``)
    with jitted JAX derivatives (compiled before the timed solve); status 0 where SciPy
    reports success, else 1."""
    import scipy.optimize

    outcomes = {}
    with jax.enable_x64(True):
        for problem in problems:
            x0 = np.asarray(problem.x0, np.float64)
            f = jax.jit(problem.fun)
            g = jax.jit(jax.grad(problem.fun))
            f(x0), g(x0)
            derivatives = {"jac": lambda x, g=g: np.asarray(g(x))}
            if method == "trust-exact":
                h = jax.jit(jax.hessian(problem.fun))
                h(x0)
                derivatives["hess"] = lambda x, h=h: np.asarray(h(x))
            else:
                hvp = jax.jit(lambda x, v, g=g: jax.jvp(g, (x,), (v,))[1])
                hvp(x0, x0)
                derivatives["hessp"] = lambda x, v, hvp=hvp: np.asarray(hvp(x, v))
            start = time.perf_counter()
            with np.errstate(all="ignore"):
                res = scipy.optimize.minimize(
                    lambda x, f=f: float(f(x)),
                    x0,
                    method=method,
                    options={"gtol": tol, "maxiter": num_steps},
                    **derivatives,
                )
            seconds = time.perf_counter() - start
            value = float(res.fun)
            outcomes[problem.name] = Outcome(
                value,
                int(res.nit),
                0 if res.success else 1,
                solved(value, problem.f_star),
                seconds,
            )
    return outcomes
