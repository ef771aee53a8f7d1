"""``Status``: how an iterative function of gradjax ended, one enum for every area."""

from __future__ import annotations

import enum

__all__ = ["Status"]


class Status(enum.IntEnum):
    """How an iterative function ended; results hold it as an int32 ``status`` code.

    Every iterative function (``newton.minimize``, ``newton.least_squares``,
    ``em.kmeans``, ``em.soft_kmeans``, ``em.plsa``, ``em.plsa_fold_in``, the
    mini-batch K-Means state, adaptive integrated gradients) reports one of:

    * ``SUCCESS``: the function's own convergence test passed (its docstring says
      which); ``result.converged == (result.status == Status.SUCCESS)``.
    * ``MAX_STEPS``: ``num_steps`` steps were taken without success.
    * ``NONFINITE``: a value, gradient or statistic became NaN/Inf; the last
      finite iterate is returned.
    * ``NO_DESCENT``: the line search found no decrease along the step.

    Example:
      >>> import gradjax as gj
      >>> gj.Status(0).name
      'SUCCESS'
      >>> gj.Status.MAX_STEPS == 1
      True
    """

    SUCCESS = 0
    MAX_STEPS = 1
    NONFINITE = 2
    NO_DESCENT = 3
