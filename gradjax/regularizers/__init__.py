"""Regularisers that make a loss flat around the data: noise, penalties, FGM, VAT, PGD, TRADES.

All four come from one expansion. Averaging the loss over input noise ε with iid
components of variance σ² adds, to second order, a curvature term,

    E l(x + ε) ≈ l(x) + ½σ² Δl(x),

and for a target-free loss l(f(x + ε), f(x)), whose value and first derivative
vanish at ε = 0, that term is ½σ² Σᵢ λᵢ ‖∇ₓfᵢ‖² (λᵢ = 2 for the squared error,
1/fᵢ for the KL divergence): noise is a gradient penalty in disguise.

* :func:`noisy_loss` averages the loss over Gaussian noise (the expectation itself);
* :func:`gradient_penalty` and :func:`jacobian_penalty` add the penalty directly
  (the latter also as the one-gradient random-sign estimator);
* :func:`fgm_perturbation` / :func:`adversarial_loss` move x along the normalised
  loss gradient, which to first order adds ε‖∇ₓl‖ to the loss (FGM);
* :func:`vat_direction` / :func:`vat_loss` move x along the top eigenvector of the
  Hessian of KL(f(x) ‖ f(x + ·)), found by power iteration with finite-difference
  Hessian-vector products; it needs no label (virtual adversarial training).

Beyond first order, robust training solves the inner maximum itself:

* :func:`pgd_perturbation` is projected gradient ascent on any loss inside the L∞ or L2
  ε-ball, from a random start, with ``bounds`` keeping x + δ a valid input (PGD; one
  step of size ε from 0 is FGSM, or FGM for L2);
* :func:`trades_loss` is TRADES' robustness term, the KL between the clean and the
  perturbed prediction at the δ that PGD finds for it.

``x`` is one example (an array, or a pytree of floating arrays); batch with
``jax.vmap`` and average. Passing a whole batch (for instance the embeddings of a
minibatch) as ``x`` is also valid and normalises the perturbation over the whole
batch, as Su's Keras code does over the embedding matrix. Norms of pytrees are global
L2 norms over all leaves.

Text models: perturb the embeddings, not the token ids, and pass ``mask`` (True at
real tokens, False at padding; its shape is a prefix of the embedding's shape, e.g.
(L,) for (L, E) embeddings) so padding is never perturbed and never counts in a norm:

    emb = model.apply(params, ids, method=CharCNN.embed)
    loss_at = lambda e: xent(model.apply(params, e, mask, method=CharCNN.classify), y)
    loss = adversarial_loss(loss_at, emb, epsilon=0.5, mask=mask)

BatchNorm in flax: the perturbed forward pass must not update the running statistics.
Run it with ``mutable=["batch_stats"]`` and drop the returned statistics, keeping only
those of the clean pass (``mutable=False`` would raise, because BatchNorm writes its
running averages in training mode)::

    def loss_at(e):  # perturbed pass: batch statistics used, running averages discarded
        logits, _ = model.apply(variables, e, train=True, mutable=["batch_stats"])
        return xent(logits, y)

References:
  Su Jianlin, "Generalisation: from random noise and gradient penalties to virtual
  adversarial training" (kexue.fm/archives/7466) and "Adversarial training: from
  FGM to gradient penalties" (kexue.fm/archives/7234). Bishop, "Training with noise
  is equivalent to Tikhonov regularization", Neural Computation 1995. Goodfellow,
  Shlens & Szegedy, ICLR 2015; Miyato, Dai & Goodfellow, ICLR 2017 (FGM on
  embeddings); Miyato, Maeda, Koyama & Ishii, TPAMI 2018 (VAT); Madry et al., ICLR 2018
  (PGD); Zhang et al., ICML 2019 (TRADES).
"""

from ._fgm import adversarial_loss, fgm_perturbation
from ._noise import noisy_loss
from ._penalties import gradient_penalty, jacobian_penalty
from ._pgd import pgd_perturbation, trades_loss
from ._vat import vat_direction, vat_loss

__all__ = [
    "adversarial_loss",
    "fgm_perturbation",
    "gradient_penalty",
    "jacobian_penalty",
    "noisy_loss",
    "pgd_perturbation",
    "trades_loss",
    "vat_direction",
    "vat_loss",
]
