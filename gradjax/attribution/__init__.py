"""Attribution: which inputs (or hidden units) made a prediction.

Path methods split ``f(x) - f(x̄)`` over the inputs (completeness): integrated
gradients on the straight input path, with a fixed quadrature rule or adaptive
Gauss–Kronrod refinement (:func:`integrated_gradients`), and their layer versions
(:func:`layer_integrated_gradients` on the straight path in layer space,
:func:`layer_conductance` along the input path). Sampled methods average gradients:
SmoothGrad (:func:`smooth_grad`) and expected gradients over a set of baselines
(:func:`expected_gradients`). Every one of these attributes many outputs in one call
with ``targets=`` (one linearisation per point, ``jax.vmap`` over one-hot
cotangents). :func:`sequence_attributions` attributes each token a causal language
model generated to every earlier token. Text models reduce embedding attributions to one score
per token (:func:`token_attributions`, :func:`token_scores`) and shade them
(:func:`render_html`); :func:`heatmap_overlay` draws image attributions (it imports
matplotlib when called).

Every function attributes one example and is pure: ``jax.jit`` and ``jax.vmap`` it
for a batch; its gradient evaluations run together with ``jax.vmap``, or
``chunk_size`` at a time with the same result.

References:
  Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017
  (arXiv:1703.01365). Su Jianlin, "Integrated gradients: a plain attribution method
  for neural networks" (kexue.fm/archives/7533).
"""

from ._integrated import integrated_gradients as integrated_gradients
from ._layer import layer_conductance as layer_conductance
from ._layer import layer_integrated_gradients as layer_integrated_gradients
from ._plot import heatmap_overlay as heatmap_overlay
from ._quadrature import ADAPTIVE as ADAPTIVE
from ._quadrature import METHODS as METHODS
from ._quadrature import quadrature as quadrature
from ._result import IntegratedGradientsResult as IntegratedGradientsResult
from ._sampling import expected_gradients as expected_gradients
from ._sampling import smooth_grad as smooth_grad
from ._sequence import SEQUENCE_METHODS as SEQUENCE_METHODS
from ._sequence import SequenceAttributionResult as SequenceAttributionResult
from ._sequence import sequence_attributions as sequence_attributions
from ._tokens import FORMULAS as FORMULAS
from ._tokens import REDUCTIONS as REDUCTIONS
from ._tokens import render_html as render_html
from ._tokens import token_attributions as token_attributions
from ._tokens import token_scores as token_scores

__all__ = [
    "ADAPTIVE",
    "FORMULAS",
    "METHODS",
    "REDUCTIONS",
    "SEQUENCE_METHODS",
    "IntegratedGradientsResult",
    "SequenceAttributionResult",
    "expected_gradients",
    "heatmap_overlay",
    "integrated_gradients",
    "layer_conductance",
    "layer_integrated_gradients",
    "quadrature",
    "render_html",
    "sequence_attributions",
    "smooth_grad",
    "token_attributions",
    "token_scores",
]
