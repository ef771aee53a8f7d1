"""Quadrature rules on [0, 1]: the fixed rules of integrated gradients and Gauss–Kronrod (7, 15)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradjax._checks import check_choice, check_int

METHODS = ("left", "right", "midpoint", "trapezoid", "gauss_legendre")
ADAPTIVE = "adaptive"


def check_steps(steps: Any, method: str) -> int:
    check_choice("method", method, METHODS)
    return check_int("steps", steps, 2 if method == "trapezoid" else 1)


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``αₖ`` in [0, 1] and weights ``wₖ`` (summing to 1) of a rule with ``steps`` nodes.

    ==================  ========================  ========================================
    method              nodes αₖ (k = 0 … n-1)    weights wₖ
    ==================  ========================  ========================================
    ``left``            k / n                     1 / n; error O(1/n)
    ``right``           (k + 1) / n               1 / n; error O(1/n)
    ``midpoint``        (k + ½) / n               1 / n; error O(1/n²)
    ``trapezoid``       k / (n - 1)               1 / (n - 1), halved at the ends; O(1/n²)
    ``gauss_legendre``  Legendre nodes on [0, 1]  Gauss weights, exact to degree 2n - 1
    ==================  ========================  ========================================

    Args:
      method: one of ``"left"``, ``"right"``, ``"midpoint"``, ``"trapezoid"``,
        ``"gauss_legendre"``.
      steps: the number of nodes (>= 1; >= 2 for ``"trapezoid"``).

    Returns:
      ``(nodes, weights)``, two float64 NumPy arrays of shape ``(steps,)``.

    Example:
      >>> from gradjax.attribution import quadrature
      >>> quadrature("trapezoid", 3)
      (array([0. , 0.5, 1. ]), array([0.25, 0.5 , 0.25]))
    """
    n = check_steps(steps, method)
    k = np.arange(n, dtype=np.float64)
    if method == "gauss_legendre":
        t, w = np.polynomial.legendre.leggauss(n)
        return (t + 1.0) / 2.0, w / 2.0
    if method == "trapezoid":
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2.0
        return k / (n - 1), weights
    offset = {"left": 0.0, "right": 1.0, "midpoint": 0.5}[method]
    return (k + offset) / n, np.full(n, 1.0 / n)


# The 15-point Kronrod extension of the 7-point Gauss rule on [-1, 1] (Piessens et al.,
# QUADPACK, 1983: the table of qk15), non-negative nodes in decreasing order; the Gauss
# nodes are the odd entries.
_KRONROD_NODES = np.array(
    [
        0.991455371120812639206854697526329,
        0.949107912342758524526189684047851,
        0.864864423359769072789712788640926,
        0.741531185599394439863864773280788,
        0.586087235467691130294144845693013,
        0.405845151377397166906606412076961,
        0.207784955007898467600689403773245,
        0.0,
    ]
)
_KRONROD_WEIGHTS = np.array(
    [
        0.022935322010529224963732008058970,
        0.063092092629978553290700663189204,
        0.104790010322250183839876322541518,
        0.140653259715525918745189590510238,
        0.169004726639267902826583426598550,
        0.190350578064785409913256402421014,
        0.204432940075298892414161999234649,
        0.209482141084727828012999174891714,
    ]
)
_GAUSS7_WEIGHTS = np.array(
    [
        0.129484966168869693270611432679082,
        0.279705391489276667901467771423780,
        0.381830050505118944950369775488975,
        0.417959183673469387755102040816327,
    ]
)


def gauss_kronrod_15() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (7, 15) Gauss–Kronrod pair on [0, 1]: ``(nodes, kronrod_weights, gauss_weights)``.

    The 15 nodes are increasing; the 7-point Gauss rule uses every second one (its
    weights are 0 on the other eight). The Kronrod rule is exact for polynomials of
    degree <= 22, the Gauss rule for degree <= 13, and ``|K15 - G7|`` estimates the
    Gauss rule's error (a pessimistic estimate of the Kronrod rule's).
    """
    t = np.concatenate([-_KRONROD_NODES[:-1], _KRONROD_NODES[::-1]])
    kronrod = np.concatenate([_KRONROD_WEIGHTS[:-1], _KRONROD_WEIGHTS[::-1]])
    gauss_half = np.zeros(8)
    gauss_half[1::2] = _GAUSS7_WEIGHTS
    gauss = np.concatenate([gauss_half[:-1], gauss_half[::-1]])
    return (t + 1.0) / 2.0, kronrod / 2.0, gauss / 2.0
