"""Moré, Garbow & Hillstrom (1981) least-squares test problems as residual functions.

Each :class:`Problem` has the paper's residuals ``r(x)`` (written with ``jax.numpy``),
its standard start ``x0`` and the sums of squares ``F = Σ rᵢ²`` of the minima the
paper lists (a global one first, then the local ones it names). A fit solves a
problem when its ``F`` is within a relative 1e-5 (absolute 1e-10) of a listed value.

Reference: Moré, Garbow & Hillstrom, "Testing unconstrained optimization software",
ACM TOMS 7 (1981) 17-41; numbers of the problems as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


class Problem(NamedTuple):
    name: str
    residuals: Callable
    x0: tuple
    minima: tuple


def solved(problem: Problem, sum_of_squares: float) -> bool:
    return any(abs(sum_of_squares - f) <= 1e-5 * f + 1e-10 for f in problem.minima)


def rosenbrock(x):  # 1
    return jnp.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])


def freudenstein_roth(x):  # 2
    return jnp.stack(
        [
            -13 + x[0] + ((5 - x[1]) * x[1] - 2) * x[1],
            -29 + x[0] + ((x[1] + 1) * x[1] - 14) * x[1],
        ]
    )


def powell_badly_scaled(x):  # 3
    return jnp.stack([1e4 * x[0] * x[1] - 1, jnp.exp(-x[0]) + jnp.exp(-x[1]) - 1.0001])


def brown_badly_scaled(x):  # 4
    return jnp.stack([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2])


def beale(x):  # 5
    y = jnp.array([1.5, 2.25, 2.625])
    i = jnp.arange(1, 4)
    return y - x[0] * (1 - x[1] ** i)


def jennrich_sampson(x):  # 6, m = 10
    i = jnp.arange(1, 11)
    return 2 + 2 * i - (jnp.exp(i * x[0]) + jnp.exp(i * x[1]))


def helical_valley(x):  # 7
    theta = jnp.arctan(x[1] / x[0]) / (2 * jnp.pi) + jnp.where(x[0] < 0, 0.5, 0.0)
    return jnp.stack([10 * (x[2] - 10 * theta), 10 * (jnp.sqrt(x[0] ** 2 + x[1] ** 2) - 1), x[2]])


BARD_Y = np.array(
    [0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39]
)


def bard(x):  # 8
    u = jnp.arange(1.0, 16.0)
    v = 16 - u
    w = jnp.minimum(u, v)
    return jnp.asarray(BARD_Y, x.dtype) - (x[0] + u / (v * x[1] + w * x[2]))


GAUSSIAN_Y = np.array(
    [0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989]  # noqa: RUF005
    + [0.3521, 0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009]
)


def gaussian(x):  # 9
    t = (8 - jnp.arange(1.0, 16.0)) / 2
    return x[0] * jnp.exp(-x[1] * (t - x[2]) ** 2 / 2) - jnp.asarray(GAUSSIAN_Y, x.dtype)


MEYER_Y = np.array(
    [34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744]  # noqa: RUF005
    + [8261, 7030, 6005, 5147, 4427, 3820, 3307, 2872],
    float,
)


def meyer(x):  # 10
    t = 45 + 5 * jnp.arange(1.0, 17.0)
    return x[0] * jnp.exp(x[1] / (t + x[2])) - jnp.asarray(MEYER_Y, x.dtype)


def box_3d(x):  # 12, m = 10
    t = 0.1 * jnp.arange(1.0, 11.0)
    return jnp.exp(-t * x[0]) - jnp.exp(-t * x[1]) - x[2] * (jnp.exp(-t) - jnp.exp(-10 * t))


def powell_singular(x):  # 13
    return jnp.stack(
        [
            x[0] + 10 * x[1],
            jnp.sqrt(5.0) * (x[2] - x[3]),
            (x[1] - 2 * x[2]) ** 2,
            jnp.sqrt(10.0) * (x[0] - x[3]) ** 2,
        ]
    )


def wood(x):  # 14
    return jnp.stack(
        [
            10 * (x[1] - x[0] ** 2),
            1 - x[0],
            jnp.sqrt(90.0) * (x[3] - x[2] ** 2),
            1 - x[2],
            jnp.sqrt(10.0) * (x[1] + x[3] - 2),
            (x[1] - x[3]) / jnp.sqrt(10.0),
        ]
    )


KOWALIK_Y = np.array(
    [0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246]
)
KOWALIK_U = np.array([4, 2, 1, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])


def kowalik_osborne(x):  # 15
    u = jnp.asarray(KOWALIK_U, x.dtype)
    return jnp.asarray(KOWALIK_Y, x.dtype) - x[0] * (u**2 + u * x[1]) / (u**2 + u * x[2] + x[3])


def brown_dennis(x):  # 16, m = 20
    t = jnp.arange(1.0, 21.0) / 5
    return (x[0] + t * x[1] - jnp.exp(t)) ** 2 + (x[2] + x[3] * jnp.sin(t) - jnp.cos(t)) ** 2


OSBORNE1_Y = np.array(
    [0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818, 0.784, 0.751]  # noqa: RUF005
    + [0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558, 0.538, 0.522, 0.506, 0.490]
    + [0.478, 0.467, 0.457, 0.448, 0.438, 0.431, 0.424, 0.420, 0.414, 0.411, 0.406]
)


def osborne1(x):  # 17
    t = 10 * jnp.arange(33.0)
    return jnp.asarray(OSBORNE1_Y, x.dtype) - (
        x[0] + x[1] * jnp.exp(-t * x[3]) + x[2] * jnp.exp(-t * x[4])
    )


def biggs_exp6(x):  # 18, m = 13
    t = 0.1 * jnp.arange(1.0, 14.0)
    y = jnp.exp(-t) - 5 * jnp.exp(-10 * t) + 3 * jnp.exp(-4 * t)
    return x[2] * jnp.exp(-t * x[0]) - x[3] * jnp.exp(-t * x[1]) + x[5] * jnp.exp(-t * x[4]) - y


def watson(x):  # 20, n = 6
    t = jnp.arange(1.0, 30.0) / 29
    j = jnp.arange(x.size)
    first = jnp.sum(j[1:] * x[1:] * t[:, None] ** (j[1:] - 1), axis=1)
    second = jnp.sum(x * t[:, None] ** j, axis=1)
    return jnp.concatenate([first - second**2 - 1, jnp.stack([x[0], x[1] - x[0] ** 2 - 1])])


def extended_rosenbrock(x):  # 21, n = 10
    odd, even = x[0::2], x[1::2]
    return jnp.stack([10 * (even - odd**2), 1 - odd], axis=1).ravel()


def extended_powell(x):  # 22, n = 8
    return jnp.concatenate([powell_singular(x[i : i + 4]) for i in range(0, x.size, 4)])


def penalty1(x):  # 23, n = 4
    return jnp.concatenate([jnp.sqrt(1e-5) * (x - 1), jnp.sum(x**2)[None] - 0.25])


def penalty2(x):  # 24, n = 4
    n, a = x.size, 1e-5
    i = jnp.arange(2, n + 1)
    y = jnp.exp(i / 10) + jnp.exp((i - 1) / 10)
    middle = jnp.sqrt(a) * (jnp.exp(x[1:] / 10) + jnp.exp(x[:-1] / 10) - y)
    tail = jnp.sqrt(a) * (jnp.exp(x[1:] / 10) - jnp.exp(-1 / 10))
    last = jnp.sum((n - jnp.arange(n)) * x**2) - 1
    return jnp.concatenate([(x[0] - 0.2)[None], middle, tail, last[None]])


def variably_dimensioned(x):  # 25, n = 10
    j = jnp.arange(1, x.size + 1)
    s = jnp.sum(j * (x - 1))
    return jnp.concatenate([x - 1, jnp.stack([s, s**2])])


def trigonometric(x):  # 26, n = 10
    n = x.size
    i = jnp.arange(1, n + 1)
    return n - jnp.sum(jnp.cos(x)) + i * (1 - jnp.cos(x)) - jnp.sin(x)


def brown_almost_linear(x):  # 27, n = 10
    n = x.size
    return jnp.concatenate([x[:-1] + jnp.sum(x) - (n + 1), (jnp.prod(x) - 1)[None]])


def discrete_boundary_value(x):  # 28, n = 10
    n = x.size
    h = 1 / (n + 1)
    t = h * jnp.arange(1, n + 1)
    padded = jnp.concatenate([jnp.zeros(1), x, jnp.zeros(1)])
    return 2 * x - padded[:-2] - padded[2:] + h**2 * (x + t + 1) ** 3 / 2


def broyden_tridiagonal(x):  # 30, n = 10
    padded = jnp.concatenate([jnp.zeros(1), x, jnp.zeros(1)])
    return (3 - 2 * x) * x - padded[:-2] - 2 * padded[2:] + 1


def linear_full_rank(x):  # 32, n = 5, m = 10
    m = 10
    s = jnp.sum(x)
    return jnp.concatenate([x - 2 * s / m - 1, jnp.full(m - x.size, -2 * s / m - 1)])


def linear_rank1(x):  # 33, n = 5, m = 10
    m = 10
    i = jnp.arange(1, m + 1)
    return i * jnp.sum(jnp.arange(1, x.size + 1) * x) - 1


def _start(values):
    return tuple(float(v) for v in values)


PROBLEMS = (
    Problem("rosenbrock", rosenbrock, (-1.2, 1.0), (0.0,)),
    Problem("freudenstein_roth", freudenstein_roth, (0.5, -2.0), (0.0, 48.9842536792400)),
    Problem("powell_badly_scaled", powell_badly_scaled, (0.0, 1.0), (0.0,)),
    Problem("brown_badly_scaled", brown_badly_scaled, (1.0, 1.0), (0.0,)),
    Problem("beale", beale, (1.0, 1.0), (0.0,)),
    Problem("jennrich_sampson", jennrich_sampson, (0.3, 0.4), (124.362182355,)),
    Problem("helical_valley", helical_valley, (-1.0, 0.0, 0.0), (0.0,)),
    Problem("bard", bard, (1.0, 1.0, 1.0), (8.21487730657e-3, 17.4286)),
    Problem("gaussian", gaussian, (0.4, 1.0, 0.0), (1.12793276961e-8,)),
    Problem("meyer", meyer, (0.02, 4000.0, 250.0), (87.9458551718,)),
    Problem("box_3d", box_3d, (0.0, 10.0, 20.0), (0.0,)),
    Problem("powell_singular", powell_singular, (3.0, -1.0, 0.0, 1.0), (0.0,)),
    Problem("wood", wood, (-3.0, -1.0, -3.0, -1.0), (0.0,)),
    Problem(
        "kowalik_osborne",
        kowalik_osborne,
        (0.25, 0.39, 0.415, 0.39),
        (3.07505603849e-4, 1.02734e-3),
    ),
    Problem("brown_dennis", brown_dennis, (25.0, 5.0, -5.0, -1.0), (85822.2016263,)),
    Problem("osborne1", osborne1, (0.5, 1.5, -1.0, 0.01, 0.02), (5.46489469748e-5,)),
    Problem("biggs_exp6", biggs_exp6, (1.0, 2.0, 1.0, 1.0, 1.0, 1.0), (0.0, 5.65565e-3)),
    Problem("watson", watson, (0.0,) * 6, (2.28767005355e-3,)),
    Problem("extended_rosenbrock", extended_rosenbrock, (-1.2, 1.0) * 5, (0.0,)),
    Problem("extended_powell", extended_powell, (3.0, -1.0, 0.0, 1.0) * 2, (0.0,)),
    Problem("penalty1", penalty1, (1.0, 2.0, 3.0, 4.0), (2.24997749700e-5,)),
    Problem("penalty2", penalty2, (0.5,) * 4, (9.37629300e-6,)),
    Problem(
        "variably_dimensioned",
        variably_dimensioned,
        _start(1 - np.arange(1, 11) / 10),
        (0.0,),
    ),
    Problem("trigonometric", trigonometric, (0.1,) * 10, (0.0, 2.79506e-5)),
    Problem("brown_almost_linear", brown_almost_linear, (0.5,) * 10, (0.0, 1.0)),
    Problem(
        "discrete_boundary_value",
        discrete_boundary_value,
        _start((t := np.arange(1, 11) / 11) * (t - 1)),
        (0.0,),
    ),
    Problem("broyden_tridiagonal", broyden_tridiagonal, (-1.0,) * 10, (0.0,)),
    Problem("linear_full_rank", linear_full_rank, (1.0,) * 5, (5.0,)),
    Problem("linear_rank1", linear_rank1, (1.0,) * 5, (10 * 9 / (2 * 21),)),
)
