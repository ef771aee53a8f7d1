"""Newton's method and gradient descent: two local models of the loss.

At ``x`` both methods minimise a quadratic model of ``f``,

    m(x + Δ) = f(x) + gᵀΔ + ½ ΔᵀBΔ,    argmin Δ = -B⁻¹g,

Newton with the curvature ``B = H = ∇²f(x)`` (the tangent paraboloid), gradient
descent with ``B = I/η`` (an isotropic paraboloid, always convex). Newton's model is
second-order accurate but ``H`` may be indefinite, so its argmin can be a maximum
or a saddle; :func:`minimize` guards against that and reports how it ended in a
:class:`Status`.

References:
  Nocedal & Wright, *Numerical Optimization* (2006), ch. 3 (line search), 4.3
  (the hard case), 7.1 (Newton-CG). Moré & Sorensen, "On the use of directions of
  negative curvature in a modified Newton method", Math. Prog. 16 (1979). Su
  Jianlin, "Gradient descent and EM: one idea" (kexue.fm/archives/4277).
"""

# gradjax.Status, under the name Newton has always used (documented once, at the top level).
from gradjax._status import Status as Status
from gradjax.newton._least_squares import LeastSquaresResult as LeastSquaresResult
from gradjax.newton._least_squares import least_squares as least_squares
from gradjax.newton._minimize import MinimizeResult as MinimizeResult
from gradjax.newton._minimize import minimize as minimize
from gradjax.newton._steps import gradient_descent_step as gradient_descent_step
from gradjax.newton._steps import newton_cg_step as newton_cg_step
from gradjax.newton._steps import newton_step as newton_step

__all__ = [
    "LeastSquaresResult",
    "MinimizeResult",
    "gradient_descent_step",
    "least_squares",
    "minimize",
    "newton_cg_step",
    "newton_step",
]
