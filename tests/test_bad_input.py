"""Bad input to every public function of gradjax: one table, each error names the argument.

A row is ``(function, call, exception type, regex the message must match)``, where
``function`` is the public name the row covers ("module.name"). The kinds of bad input
(DESIGN.md, "Bad input"): a string or None for a number (``TypeError``), NaN or Inf in
concrete data (``ValueError``), complex input (``TypeError``), empty input
(``ValueError``), an integer where a PRNG key is taken (``TypeError`` naming ``key``), a
concrete JAX scalar out of range (``ValueError``), plus each function's own shapes and
options. Gradients and updates are exempt from the NaN rule: a NaN gradient propagates
(tested with the transformations). Every row fails before anything is compiled.

``test_the_table_covers_every_public_function`` walks the ``__all__`` of each public
module: a new public function without a row here (or a reason in ``EXEMPT``) fails.
tests/em and tests/attribution keep their own tables; the rows here for those two
modules are the kinds those tables lack.
"""

from __future__ import annotations

import enum
import importlib
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.sparse
from _edge_functions import wrong_sign_square
from jax.experimental import sparse

from gradjax import attribution, datasets, em, gan, models, newton, optim
from gradjax import regularizers as reg

MODULES = ("newton", "em", "optim", "gan", "regularizers", "attribution", "datasets", "models")
EXEMPT = {
    "datasets.load_digits": "takes no arguments",
    "models.MLP": "a flax module without options of its own; flax checks its input shapes",
    "models.MLPCritic": "a flax module without options of its own; flax checks its input shapes",
    "models.MLPGenerator": "a flax module without options of its own; flax checks input shapes",
    "models.CharCNN": "a flax module without options of its own; flax checks its input shapes",
}

KEY, NAN = jax.random.key(0), float("nan")
V3, NAN3, C3, E0 = (
    jnp.ones(3),
    jnp.array([0.0, jnp.nan, 1.0]),
    jnp.ones(3, jnp.complex64),
    jnp.ones(0),
)


def sq(z):
    return jnp.sum(z**2)


def two_logits(z):
    return jnp.stack([z.sum(), -z.sum()])


# ----------------------------------------------------------------------------- newton

NEWTON = [
    ("newton.newton_step", lambda: newton.newton_step(lambda x: x**2, V3), ValueError, "scalar"),
    ("newton.minimize", lambda: newton.minimize(lambda x: x, jnp.ones(2)), ValueError, "scalar"),
    ("newton.newton_step", lambda: newton.newton_step(jnp.sum, jnp.ones(3, int)), TypeError,
     "params"),
    ("newton.newton_step", lambda: newton.newton_step(lambda x: 0.0, {}), ValueError, "params"),
    ("newton.newton_step", lambda: newton.newton_step("f", jnp.ones(2)), TypeError, "fun"),
    ("newton.newton_step", lambda: newton.newton_step(jnp.sum, NAN3), ValueError,
     "params must be finite"),
    ("newton.newton_step", lambda: newton.newton_step(jnp.sum, V3, damping=-1.0), ValueError,
     "damping"),
    ("newton.newton_step", lambda: newton.newton_step(jnp.sum, V3, damping=jnp.array(-2.0)),
     ValueError, "damping"),
    ("newton.newton_step", lambda: newton.newton_step(jnp.sum, V3, damping="0"), TypeError,
     "damping"),
    ("newton.newton_step", lambda: newton.newton_step(lambda x, y: jnp.sum(x @ y), jnp.ones(2),
                                                      V3), TypeError, "dot_general"),
    ("newton.newton_cg_step", lambda: newton.newton_cg_step(jnp.sum, V3, cg_num_steps=0),
     ValueError, "cg_num_steps"),
    ("newton.newton_cg_step", lambda: newton.newton_cg_step(jnp.sum, V3, cg_num_steps=2.5),
     TypeError, "cg_num_steps"),
    ("newton.newton_cg_step", lambda: newton.newton_cg_step(jnp.sum, V3, cg_num_steps=True),
     TypeError, "cg_num_steps"),
    ("newton.newton_cg_step", lambda: newton.newton_cg_step(jnp.sum, V3, cg_tol=None), TypeError,
     "cg_tol"),
    ("newton.newton_cg_step", lambda: newton.newton_cg_step(jnp.sum, V3, cg_tol=jnp.array(-1.0)),
     ValueError, "cg_tol"),
    ("newton.newton_cg_step", lambda: newton.newton_cg_step(jnp.sum, V3, cg_tol=NAN), ValueError,
     "cg_tol"),
    ("newton.newton_cg_step", lambda: newton.newton_cg_step(jnp.sum, jnp.ones(3, bool)),
     TypeError, "params"),
    ("newton.newton_cg_step", lambda: newton.newton_cg_step(jnp.sum, E0), ValueError, "params"),
    ("newton.newton_cg_step", lambda: newton.newton_cg_step(jnp.sum, C3), TypeError, "params"),
    ("newton.gradient_descent_step", lambda: newton.gradient_descent_step(
        jnp.sum, V3, learning_rate=np.float32(-1)), ValueError, "learning_rate"),
    ("newton.gradient_descent_step", lambda: newton.gradient_descent_step(
        jnp.sum, V3, learning_rate=0.0), ValueError, "learning_rate"),
    ("newton.gradient_descent_step", lambda: newton.gradient_descent_step(
        jnp.sum, V3, learning_rate=None), TypeError, "learning_rate"),
    ("newton.gradient_descent_step", lambda: newton.gradient_descent_step(
        jnp.sum, V3, learning_rate="0.1"), TypeError, "learning_rate"),
    ("newton.gradient_descent_step", lambda: newton.gradient_descent_step(
        jnp.sum, [], learning_rate=0.1), ValueError, "params"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, method="bfgs"), ValueError,
     "method"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, tol=-1.0), ValueError, "tol"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, tol=np.float32(-1)), ValueError,
     "tol"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, tol="small"), TypeError, "tol"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, adjoint="forward"), ValueError,
     "adjoint"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, C3), TypeError, "params"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, NAN3), ValueError, "params"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, {}), ValueError, "params"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, num_steps=-1), ValueError,
     "num_steps"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, method="gradient_descent"),
     TypeError, "learning_rate"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, learning_rate=0.1), ValueError,
     "learning_rate is not an option of method='newton'"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, cg_tol=1e-3), ValueError,
     "cg_tol is not an option"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, cg_num_steps=5), ValueError,
     "cg_num_steps is not an option"),
    ("newton.minimize", lambda: newton.minimize(
        jnp.sum, V3, method="gradient_descent", learning_rate=0.1, damping=0.0), ValueError,
     "damping is not an option of method='gradient_descent'"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, armijo=0.0), ValueError, "armijo"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, armijo=1.5), ValueError, "armijo"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, armijo=np.float64(NAN)),
     ValueError, "armijo"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, backtrack=1.0), ValueError,
     "backtrack"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, backtrack="half"), TypeError,
     "backtrack"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, max_backtracks=-1), ValueError,
     "max_backtracks"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, max_backtracks=3.0), TypeError,
     "max_backtracks"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, method="newton_cg",
                                                cg_num_steps=0), ValueError, "cg_num_steps"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, damping=True), TypeError,
     "damping"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, tol=np.float64(NAN)), ValueError,
     "tol"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, jnp.ones(3, jnp.int32)), TypeError,
     "params"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, jnp.ones(3, bool)), TypeError,
     "params"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, E0), ValueError, "params"),
    ("newton.minimize", lambda: jax.jit(lambda: newton.minimize(jnp.sum, NAN3))(), ValueError,
     "params must be finite"),
    ("newton.minimize", lambda: jax.jit(lambda t: newton.minimize(jnp.sum, V3, num_steps=t))(3),
     TypeError, "num_steps"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, method="gradient_descent",
                                                learning_rate=np.float32(0)), ValueError,
     "learning_rate"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, damping=jnp.array(-1.0)),
     ValueError, "damping"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, method="newton_cg", cg_tol="0"),
     TypeError, "cg_tol"),
    ("newton.least_squares", lambda: newton.least_squares("r", V3), TypeError, "residuals"),
    ("newton.least_squares", lambda: newton.least_squares(lambda x: x, V3, num_steps=0),
     ValueError, "num_steps"),
    ("newton.least_squares", lambda: newton.least_squares(lambda x: x, V3, method="dogleg"),
     ValueError, "method"),
    ("newton.least_squares", lambda: newton.least_squares(lambda x: x, V3, adjoint="forward"),
     ValueError, "adjoint"),
    ("newton.least_squares", lambda: newton.least_squares(lambda x: x, V3, tol=-1.0),
     ValueError, "tol"),
    ("newton.least_squares", lambda: newton.least_squares(lambda x: x, NAN3), ValueError,
     "params must be finite"),
    ("newton.least_squares", lambda: newton.least_squares(lambda x: x, C3), TypeError, "params"),
    ("newton.least_squares", lambda: newton.least_squares(lambda x: x[:0], V3), ValueError,
     "residuals"),
    ("newton.least_squares", lambda: newton.least_squares(lambda x: x > 0, V3), TypeError,
     "residuals"),
    ("newton.least_squares", lambda: newton.least_squares(lambda x: x, V3, bounds=(V3, V3 - 1)),
     ValueError, "lower <= upper"),
    ("newton.least_squares", lambda: newton.least_squares(
        lambda p: p["a"], {"a": V3}, bounds=({"b": V3}, {"b": V3})), ValueError, "bounds"),
    ("newton.least_squares", lambda: newton.least_squares(
        lambda x: x, V3, bounds=(jnp.zeros(2), V3)), ValueError, "bounds"),
    ("newton.least_squares", lambda: newton.least_squares(lambda x: x, V3, bounds=V3),
     TypeError, "bounds"),
    ("newton.least_squares", lambda: newton.least_squares(
        lambda x: x, V3, bounds=(NAN3, V3)), ValueError, "bounds"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, bounds=(V3, V3 - 1)), ValueError,
     "lower <= upper"),
    ("newton.minimize", lambda: newton.minimize(jnp.sum, V3, method="gradient_descent",
                                                learning_rate=0.1, bounds=(V3, V3)), ValueError,
     "bounds"),
    ("newton.minimize", lambda: newton.minimize(lambda p: jnp.sum(p["a"]), {"a": V3},
                                                bounds=(V3, V3)), ValueError,
     "bounds"),
]  # fmt: skip

# ----------------------------------------------------------------------------- regularizers


def pgd(epsilon=0.1, **kwargs):
    x = kwargs.pop("x", jnp.full(3, 0.5))
    return reg.pgd_perturbation(
        kwargs.pop("key", KEY), kwargs.pop("fun", sq), x, epsilon=epsilon, **kwargs
    )


def trades(epsilon=0.1, **kwargs):
    x = kwargs.pop("x", jnp.full(3, 0.5))
    return reg.trades_loss(
        kwargs.pop("key", KEY), kwargs.pop("fun", two_logits), x, epsilon=epsilon, **kwargs,
    )  # fmt: skip


OUT3 = jnp.full(3, 2.0)  # outside bounds (-1, 1)


REGULARIZERS = [
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, V3, stdev=-0.1), ValueError,
     "stdev"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, V3, stdev="0.1"), TypeError,
     "stdev"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, V3, stdev=jnp.array(-1.0)),
     ValueError, "stdev"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, V3, stdev=1, num_samples=0),
     ValueError, "num_samples"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, V3, stdev=1, num_samples=1.5),
     TypeError, "num_samples"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(0, sq, V3, stdev=1), TypeError, "key"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, jnp.cos, V3, stdev=1), ValueError,
     "fun must return a sc"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, E0, stdev=1), ValueError,
     "x must have at least one entry"),
    ("regularizers.gradient_penalty", lambda: reg.gradient_penalty(jnp.sin, V3), ValueError,
     "fun must return a scalar"),
    ("regularizers.gradient_penalty", lambda: reg.gradient_penalty(sq, jnp.arange(3)), TypeError,
     "x must be floating"),
    ("regularizers.gradient_penalty", lambda: reg.gradient_penalty(sq, C3), TypeError,
     "x must be floating"),
    ("regularizers.gradient_penalty", lambda: reg.gradient_penalty(sq, NAN3), ValueError,
     "x must be finite"),
    ("regularizers.gradient_penalty", lambda: reg.gradient_penalty(sq, {}), ValueError, "x must"),
    ("regularizers.jacobian_penalty", lambda: reg.jacobian_penalty(0, jnp.sin, V3), TypeError,
     "key"),
    ("regularizers.jacobian_penalty", lambda: reg.jacobian_penalty(None, "f", V3), TypeError,
     "fun must be callable"),
    ("regularizers.jacobian_penalty", lambda: reg.jacobian_penalty(
        None, jnp.round, jnp.ones(3, int)), TypeError, "x must be floating"),
    ("regularizers.fgm_perturbation", lambda: reg.fgm_perturbation(sq, V3, epsilon=-1.0),
     ValueError, "epsilon"),
    ("regularizers.fgm_perturbation", lambda: reg.fgm_perturbation(
        sq, V3, epsilon=jnp.array(-1.0)), ValueError, "epsilon"),
    ("regularizers.fgm_perturbation", lambda: reg.fgm_perturbation(sq, V3, epsilon=None),
     TypeError, "epsilon"),
    ("regularizers.fgm_perturbation", lambda: reg.fgm_perturbation(3.0, V3, epsilon=1.0),
     TypeError, "fun must be callable"),
    ("regularizers.fgm_perturbation", lambda: reg.fgm_perturbation(
        sq, V3, epsilon=1, mask=jnp.ones(4, bool)), ValueError, "mask"),
    ("regularizers.fgm_perturbation", lambda: reg.fgm_perturbation(sq, NAN3, epsilon=1.0),
     ValueError, "x must be finite"),
    ("regularizers.adversarial_loss", lambda: reg.adversarial_loss(sq, V3, epsilon=NAN),
     ValueError, "epsilon"),
    ("regularizers.adversarial_loss", lambda: reg.adversarial_loss(sq, V3, epsilon="1"),
     TypeError, "epsilon"),
    ("regularizers.adversarial_loss", lambda: reg.adversarial_loss(sq, C3, epsilon=1.0),
     TypeError, "x must be floating"),
    ("regularizers.vat_loss", lambda: reg.vat_loss(KEY, two_logits, V3, epsilon=-1.0),
     ValueError, "epsilon"),
    ("regularizers.vat_loss", lambda: reg.vat_loss(KEY, two_logits, V3, num_steps=-1),
     ValueError, "num_steps"),
    ("regularizers.vat_loss", lambda: reg.vat_loss(KEY, two_logits, V3, xi=-1.0), ValueError,
     "xi"),
    ("regularizers.vat_loss", lambda: reg.vat_loss(KEY, two_logits, V3, xi=jnp.array(-1.0)),
     ValueError, "xi"),
    ("regularizers.vat_loss", lambda: reg.vat_loss(1, two_logits, V3), TypeError, "key"),
    ("regularizers.vat_direction", lambda: reg.vat_direction(KEY, sq, V3), ValueError,
     "fun must return logits"),
    ("regularizers.vat_direction", lambda: reg.vat_direction(KEY, two_logits, V3, xi=None),
     TypeError, "xi"),
    ("regularizers.vat_direction", lambda: reg.vat_direction(0, two_logits, V3), TypeError,
     "key"),
    ("regularizers.vat_direction", lambda: reg.vat_direction(KEY, two_logits, E0), ValueError,
     "x must have at least one entry"),
    ("regularizers.pgd_perturbation", lambda: pgd(epsilon=-0.1), ValueError,
     "epsilon must be finite and >= 0"),
    ("regularizers.pgd_perturbation", lambda: pgd(epsilon=np.float32("nan")), ValueError,
     "epsilon must be finite"),
    ("regularizers.pgd_perturbation", lambda: pgd(epsilon=float("inf")), ValueError,
     "epsilon must be finite"),
    ("regularizers.pgd_perturbation", lambda: pgd(epsilon="0.1"), TypeError, "epsilon"),
    ("regularizers.pgd_perturbation", lambda: pgd(num_steps=0), ValueError,
     "num_steps must be >= 1"),
    ("regularizers.pgd_perturbation", lambda: pgd(num_steps=2.0), TypeError,
     "num_steps must be an int"),
    ("regularizers.pgd_perturbation", lambda: pgd(step_size=-1), ValueError, "step_size"),
    ("regularizers.pgd_perturbation", lambda: pgd(step_size=jnp.array(-1.0)), ValueError,
     "step_size"),
    ("regularizers.pgd_perturbation", lambda: pgd(norm="l1"), ValueError, "norm must be one of"),
    ("regularizers.pgd_perturbation", lambda: pgd(random_start=1), TypeError,
     "random_start must be a bool"),
    ("regularizers.pgd_perturbation", lambda: pgd(key=0), TypeError, "key"),
    ("regularizers.pgd_perturbation", lambda: pgd(bounds=(0,)), ValueError,
     "bounds must be a pair"),
    ("regularizers.pgd_perturbation", lambda: pgd(bounds=(1, 0)), ValueError,
     "bounds must have lower <= upper"),
    ("regularizers.pgd_perturbation", lambda: pgd(bounds=(0, np.nan)), ValueError,
     "bounds' upper must not be NaN"),
    ("regularizers.pgd_perturbation", lambda: pgd(bounds=(jnp.zeros(2), 1)), ValueError,
     "bounds' lower must broadcast"),
    ("regularizers.pgd_perturbation", lambda: pgd(bounds=(1j, 2)), TypeError,
     "bounds' lower must be a real number"),
    ("regularizers.pgd_perturbation", lambda: pgd(bounds=(0.6, 1)), ValueError,
     "x must lie within bounds"),
    ("regularizers.pgd_perturbation", lambda: pgd(x=NAN3), ValueError, "x must be finite"),
    ("regularizers.pgd_perturbation", lambda: pgd(x=jnp.arange(3)), TypeError,
     "x must be floating"),
    ("regularizers.pgd_perturbation", lambda: pgd(x=E0), ValueError, "x must have at least"),
    ("regularizers.pgd_perturbation", lambda: pgd(fun=jnp.sin), ValueError,
     "fun must return a scalar"),
    ("regularizers.pgd_perturbation", lambda: pgd(fun=3.0), TypeError,
     "fun must be callable"),
    ("regularizers.pgd_perturbation", lambda: pgd(mask=jnp.ones(4, bool)), ValueError, "mask"),
    ("regularizers.trades_loss", lambda: trades(epsilon=jnp.array(-1.0)), ValueError,
     "epsilon must be finite and >= 0"),
    ("regularizers.trades_loss", lambda: trades(num_steps=True), TypeError,
     "num_steps must be an int"),
    ("regularizers.trades_loss", lambda: trades(norm="L2"), ValueError, "norm must be one of"),
    ("regularizers.trades_loss", lambda: trades(bounds=(0, 0.4)), ValueError,
     "x must lie within bounds"),
    ("regularizers.trades_loss", lambda: trades(fun=sq), ValueError,
     "fun must return logits"),
    ("regularizers.trades_loss", lambda: trades(key=0), TypeError, "key"),
    ("regularizers.trades_loss", lambda: trades(step_size="big"), TypeError, "step_size"),
    # Issue 29, items 8: Python-float bounds are concrete, also inside jit with x closed over.
    ("regularizers.pgd_perturbation", lambda: jax.jit(lambda: pgd(x=OUT3, bounds=(-1.0, 1.0)))(),
     ValueError, "x must lie within bounds"),
    ("regularizers.pgd_perturbation", lambda: jax.jit(lambda: pgd(bounds=(1.0, -1.0)))(),
     ValueError, "bounds must have lower <= upper"),
    ("regularizers.pgd_perturbation", lambda: jax.jit(lambda: pgd(
        x=OUT3, bounds=(np.float32(-1), np.float32(1))))(), ValueError, "x must lie within"),
    ("regularizers.trades_loss", lambda: jax.jit(lambda: trades(x=OUT3, bounds=(-1.0, 1.0)))(),
     ValueError, "x must lie within bounds"),
    # The sweep of issue 24: the one bool rule, masks, names left behind, closed-over data.
    ("regularizers.pgd_perturbation", lambda: pgd(bounds=(False, True)), TypeError,
     "bounds' lower must be a real number"),
    ("regularizers.pgd_perturbation", lambda: pgd(bounds=(0, None)), TypeError,
     "bounds' upper must be a real number"),
    ("regularizers.pgd_perturbation", lambda: pgd(mask=jnp.ones(3)), TypeError,
     "mask must be a bool array"),
    ("regularizers.pgd_perturbation", lambda: pgd(loss_fn=sq), TypeError, "loss_fn"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, V3, stdev=True), TypeError,
     "stdev must be a real number, got bool"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, V3, stdev=np.inf), ValueError,
     "stdev must be finite"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, V3, sigma=0.1), TypeError,
     "sigma"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, V3, 0.1), TypeError,
     "positional"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, "x", stdev=0.1), TypeError,
     "x must be floating-point arrays.*got str"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, V3, stdev=0.1,
                                                       mask=np.ones(3, int)), TypeError,
     "mask must be a bool array"),
    ("regularizers.noisy_loss", lambda: jax.jit(lambda: reg.noisy_loss(KEY, sq, NAN3,
                                                                       stdev=0.1))(),
     ValueError, "x must be finite"),
    ("regularizers.noisy_loss", lambda: reg.noisy_loss(KEY, sq, jnp.ones(3, bool), stdev=0.1),
     TypeError, "x must be floating"),
    ("regularizers.gradient_penalty", lambda: jax.jit(lambda: reg.gradient_penalty(sq, NAN3))(),
     ValueError, "x must be finite"),
    ("regularizers.gradient_penalty", lambda: reg.gradient_penalty(lambda z: jnp.sum(z) > 0, V3),
     TypeError, "fun must return a real floating scalar"),
    ("regularizers.jacobian_penalty", lambda: reg.jacobian_penalty(two_logits, V3, None),
     TypeError, "key"),
    ("regularizers.jacobian_penalty", lambda: reg.jacobian_penalty(None, lambda z: (z, z), V3),
     TypeError, "fun must return one array"),
    ("regularizers.fgm_perturbation", lambda: reg.fgm_perturbation(sq, V3, epsilon=True),
     TypeError, "epsilon must be a real number, got bool"),
    ("regularizers.fgm_perturbation", lambda: reg.fgm_perturbation(sq, V3, epsilon=1.0,
                                                                   mask=jnp.ones(3)), TypeError,
     "mask must be a bool array"),
    ("regularizers.adversarial_loss", lambda: reg.adversarial_loss(sq, V3, epsilon=1.0,
                                                                   mask={"a": V3 > 0}),
     ValueError, "mask must have the structure of x"),
    ("regularizers.vat_direction", lambda: reg.vat_direction(KEY, lambda z: z[:0], V3),
     ValueError, "fun must return logits of at least one class"),
    ("regularizers.vat_direction", lambda: reg.vat_direction(KEY, two_logits, V3, num_steps=True),
     TypeError, "num_steps must be an int"),
    ("regularizers.vat_loss", lambda: reg.vat_loss(KEY, two_logits, V3, num_power_iters=1),
     TypeError, "num_power_iters"),
    ("regularizers.vat_loss", lambda: reg.vat_loss(KEY, two_logits, V3, epsilon=np.float32(np.inf)),
     ValueError, "epsilon must be finite"),
    ("regularizers.trades_loss", lambda: trades(fun=lambda z: z[:0]), ValueError,
     "at least one class"),
    ("regularizers.trades_loss", lambda: trades(mask=jnp.ones(3, int)), TypeError,
     "mask must be a bool array"),
]  # fmt: skip

# ----------------------------------------------------------------------------- optim

CLIPPING = [
    optim.clip_by_global_norm,
    optim.soft_clip_by_global_norm,
    optim.clip_by_leaf_norm,
    optim.soft_clip_by_leaf_norm,
]
BAD_MAX_NORMS = [
    (0.0, ValueError),
    (-1.0, ValueError),
    (np.float32(-1), ValueError),
    (jnp.array(-1.0), ValueError),
    (float("inf"), ValueError),
    (float("nan"), ValueError),
    (np.float64("nan"), ValueError),
    ("1", TypeError),
    (None, TypeError),
    ([1.0, 2.0], TypeError),
    (True, TypeError),
    (1 + 2j, TypeError),
    (jnp.ones(2), TypeError),
]
INT_UPDATES = {"a": jnp.ones(2), "b": jnp.arange(3)}  # an int32 leaf would be truncated
UPDATES = {"a": jnp.ones(2), "b": {"c": jnp.ones(3)}}
BATCH = (jnp.ones((8, 2)), jnp.ones(8))


def update(transform, updates):
    return transform.update(updates, optax.EmptyState())


def mse(params, batch):
    return jnp.mean((batch[0] @ params - batch[1]) ** 2)


def accumulate_int_updates():
    acc = optim.accumulate(optax.sgd(0.1), 2)
    return acc.update(INT_UPDATES, acc.init(INT_UPDATES))


S, MG, MB = optim.scale_by_multipliers, optim.map_gradients, optim.microbatched_value_and_grad
PE, W = optim.per_example_clipped_grad, jnp.ones(2)


def DP(noise_multiplier=1.0, **overrides):
    options = {"key": KEY, "max_norm": 1.0, "batch_size": 8, **overrides}
    return optim.dp_aggregate(noise_multiplier, **options)


def dp_int_updates():
    tx = DP()
    return tx.update(INT_UPDATES, tx.init(INT_UPDATES))


def EPS(noise_multiplier=1.0, sampling_rate=0.01, num_steps=10, delta=1e-5, **options):
    return optim.dp_epsilon(noise_multiplier, sampling_rate, num_steps, delta, **options)


OPTIM = [
    *[(f"optim.{f.__name__}", lambda f=f, m=m: f(m), e, "max_norm")
      for f in CLIPPING for m, e in BAD_MAX_NORMS],
    *[(f"optim.{f.__name__}", lambda f=f: update(f(1.0), INT_UPDATES), TypeError,
       r"updates\['b'\].*int32") for f in CLIPPING],
    ("optim.clip_by_global_norm", lambda: update(optim.clip_by_global_norm(1.0), {"a": "x"}),
     TypeError, r"updates\['a'\] must be an array"),
    ("optim.scale_by_multipliers", lambda: S({"a[": 0.1}), ValueError, "multipliers.*regular"),
    ("optim.scale_by_multipliers", lambda: S({"a": "0.1"}), TypeError, r"multipliers\['a'\]"),
    ("optim.scale_by_multipliers", lambda: S({"a": None}), TypeError, r"multipliers\['a'\]"),
    ("optim.scale_by_multipliers", lambda: S({"a": NAN}), ValueError, "multipliers.*nan"),
    ("optim.scale_by_multipliers", lambda: S({"a": np.float32("nan")}), ValueError,
     "finite.*nan"),
    ("optim.scale_by_multipliers", lambda: S({"a": jnp.inf}), ValueError, "multipliers.*finite"),
    ("optim.scale_by_multipliers", lambda: S({"a": jnp.ones(2)}), TypeError,
     "multipliers.*scalar"),
    ("optim.scale_by_multipliers", lambda: S({"a": 1j}), TypeError, "multipliers"),
    ("optim.scale_by_multipliers", lambda: S({"a": "x", "b": {"c": 1.0}}), TypeError,
     r"multipliers\['a'\]"),
    ("optim.scale_by_multipliers", lambda: S({"a": jnp.ones(2), "b": {"c": 1.0}}), TypeError,
     r"multipliers\['a'\].*scalar"),
    ("optim.scale_by_multipliers", lambda: S([]), ValueError, "multipliers"),
    ("optim.scale_by_multipliers", lambda: S({}), ValueError, "multipliers"),
    ("optim.scale_by_multipliers", lambda: S("enc"), TypeError, "multipliers"),
    ("optim.scale_by_multipliers", lambda: update(S({"a": 0.5, "x": {"c": 1.0}}), UPDATES),
     ValueError, "multipliers.*structure"),
    ("optim.scale_by_multipliers", lambda: S({"a": 0.5, "x": {"c": 1.0}}).init(UPDATES),
     ValueError, "multipliers.*structure"),
    ("optim.scale_by_multipliers", lambda: S({"zzz": 0.5}).init(UPDATES), ValueError,
     r"\['zzz'\].*no leaf.*allow_unused"),
    ("optim.scale_by_multipliers", lambda: update(S(lambda path, leaf: jnp.ones(2)), UPDATES),
     TypeError, r"multipliers\('a'.*scalar"),
    ("optim.scale_by_multipliers", lambda: update(S(lambda path, leaf: "1"), UPDATES), TypeError,
     r"multipliers\('a'"),
    ("optim.scale_by_multipliers", lambda: update(S(lambda p, leaf: np.float32(-np.nan)),
                                                  UPDATES), ValueError,
     r"multipliers\('a'.*finite.*nan"),
    ("optim.scale_by_multipliers", lambda: S({"a": 1.0}, allow_unused=1), TypeError,
     "allow_unused"),
    ("optim.scale_by_multipliers", lambda: update(S({"b": 0.5}), INT_UPDATES), TypeError,
     r"updates\['b'\]"),
    ("optim.scale_by_multipliers", lambda: S({"a": jnp.array(jnp.nan)}), ValueError,
     r"multipliers\['a'\].*finite"),
    ("optim.map_gradients", lambda: MG(3.0), TypeError, "fn must be callable"),
    ("optim.map_gradients", lambda: update(MG(lambda path, g: g.sum()), UPDATES), ValueError,
     r"fn.*'a'.*shape"),
    ("optim.map_gradients", lambda: update(MG(lambda path, g: None), UPDATES), TypeError,
     "fn.*'a'"),
    ("optim.map_gradients", lambda: update(MG(lambda path, g: g * 1j), UPDATES), TypeError,
     "fn.*complex"),
    ("optim.map_gradients", lambda: update(MG(lambda p, g: g), INT_UPDATES), TypeError,
     "updates"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), 0), ValueError, "every_k"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), np.int64(0)), ValueError,
     "every_k"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), 2.0), TypeError, "every_k"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), "2"), TypeError, "every_k"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), None), TypeError, "every_k"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), True), TypeError, "every_k"),
    ("optim.accumulate", lambda: optim.accumulate(lambda g: g, 2), TypeError, "optimizer"),
    ("optim.accumulate", accumulate_int_updates, TypeError, r"updates\['b'\]"),
    ("optim.microbatched_value_and_grad", lambda: MB("loss", 2), TypeError, "fun must"),
    ("optim.microbatched_value_and_grad", lambda: MB(mse, 0), ValueError, "num_microbatches"),
    ("optim.microbatched_value_and_grad", lambda: MB(mse, np.int32(0)), ValueError,
     "num_microbatches"),
    ("optim.microbatched_value_and_grad", lambda: MB(mse, 2.0), TypeError, "num_microbatches"),
    ("optim.microbatched_value_and_grad", lambda: MB(mse, None), TypeError, "num_microbatches"),
    ("optim.microbatched_value_and_grad", lambda: MB(mse, 2, has_aux="yes"), TypeError,
     "has_aux"),
    ("optim.microbatched_value_and_grad", lambda: MB(mse, 3)(jnp.ones(2), BATCH), ValueError,
     r"batch.*8.*num_microbatches=3"),
    ("optim.microbatched_value_and_grad", lambda: MB(mse, 2)(jnp.ones(2), (BATCH[0],
                                                                           BATCH[1][:4])),
     ValueError, "batch.*leading"),
    ("optim.microbatched_value_and_grad", lambda: MB(mse, 2)(jnp.ones(2), (BATCH[0], 1.0)),
     ValueError, "batch.*leading"),
    ("optim.microbatched_value_and_grad", lambda: MB(mse, 2)(jnp.ones(2), ()), ValueError,
     "batch"),
    ("optim.microbatched_value_and_grad", lambda: MB(mse, 2, skip_nonfinite=1), TypeError,
     "skip_nonfinite"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), 2, skip_nonfinite="yes"),
     TypeError, "skip_nonfinite"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), 2, max_norm_ratio=0.0),
     ValueError, "max_norm_ratio"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), 2, max_norm_ratio=NAN),
     ValueError, "max_norm_ratio"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), 2, max_norm_ratio="2"),
     TypeError, "max_norm_ratio"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), 2, max_norm_ratio=2.0,
                                                  norm_window=0), ValueError, "norm_window"),
    ("optim.accumulate", lambda: optim.accumulate(optax.sgd(0.1), 2, norm_window=8), ValueError,
     "norm_window belongs to max_norm_ratio"),
    ("optim.per_example_clipped_grad", lambda: PE("loss", 1.0), TypeError, "fun must"),
    *[("optim.per_example_clipped_grad", lambda m=m: PE(mse, m), e, "max_norm")
      for m, e in BAD_MAX_NORMS],
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0, form="medium"), ValueError, "form"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0, method="jvp"), ValueError, "method"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0, chunk_size=0), ValueError,
     "chunk_size"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0, chunk_size=2.0), TypeError,
     "chunk_size"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0, has_aux=1), TypeError, "has_aux"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0, other_layers="vmap"), ValueError,
     "other_layers belongs to method='ghost'"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0, method="ghost", other_layers="x"),
     ValueError, "other_layers"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0, chunk_size=3)(W, BATCH), ValueError,
     "batch.*8.*chunk_size=3"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0)(W, (BATCH[0], BATCH[1][:4])),
     ValueError, "batch.*leading"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0)(W, ()), ValueError, "batch"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0)(W, (BATCH[0][:0], BATCH[1][:0])),
     ValueError, "batch.*at least one example"),
    ("optim.per_example_clipped_grad", lambda: PE(lambda p, b: b[0] @ p, 1.0)(W, BATCH),
     ValueError, "fun must return a scalar"),
    ("optim.per_example_clipped_grad", lambda: PE(mse, 1.0, method="ghost")(W, BATCH),
     ValueError, r"ghost.*params: a parameter used outside any flax layer.*other_layers"),
    ("optim.dp_aggregate", lambda: DP(-1.0), ValueError, "noise_multiplier"),
    ("optim.dp_aggregate", lambda: DP(NAN), ValueError, "noise_multiplier"),
    ("optim.dp_aggregate", lambda: DP("1"), TypeError, "noise_multiplier"),
    ("optim.dp_aggregate", lambda: DP(key=0), TypeError, "key"),
    ("optim.dp_aggregate", lambda: DP(key=jax.random.split(KEY)), ValueError, "key"),
    ("optim.dp_aggregate", lambda: DP(max_norm=0.0), ValueError, "max_norm"),
    ("optim.dp_aggregate", lambda: DP(batch_size=0), ValueError, "batch_size"),
    ("optim.dp_aggregate", lambda: DP(batch_size=8.0), TypeError, "batch_size"),
    ("optim.dp_aggregate", lambda: optim.dp_aggregate(1.0, key=KEY), TypeError, "max_norm"),
    ("optim.dp_aggregate", dp_int_updates, TypeError, r"updates\['b'\]"),
    ("optim.dp_epsilon", lambda: EPS(0.0), ValueError, "noise_multiplier"),
    ("optim.dp_epsilon", lambda: EPS(sampling_rate=0.0), ValueError, "sampling_rate"),
    ("optim.dp_epsilon", lambda: EPS(sampling_rate=1.5), ValueError, "sampling_rate"),
    ("optim.dp_epsilon", lambda: EPS(num_steps=0), ValueError, "num_steps"),
    ("optim.dp_epsilon", lambda: EPS(num_steps=2.5), TypeError, "num_steps"),
    ("optim.dp_epsilon", lambda: EPS(delta=0.0), ValueError, "delta"),
    ("optim.dp_epsilon", lambda: EPS(delta=1.0), ValueError, "delta"),
    ("optim.dp_epsilon", lambda: EPS(accountant="gdp"), ValueError, "accountant"),
]  # fmt: skip

# ----------------------------------------------------------------------------- gan

T, X = jnp.zeros(4), jnp.zeros((4, 3))
X_NAN = X.at[0, 0].set(jnp.nan)


def single_loss_of_mlps(**overrides):
    """``single_loss`` of a linear generator (z (B, 2) -> (B, 3)) and critic, called."""
    params = {"generator": jnp.ones((2, 3)), "discriminator": jnp.ones(3)}
    losses = overrides.pop("losses", gan.qp_losses)
    generator = overrides.pop("generator", lambda p, z: z @ p)
    loss_fn = gan.single_loss(losses, generator, lambda p, x: x @ p)
    args = {"params": params, "x_real": X, "z": jnp.ones((4, 2)), **overrides}
    return loss_fn(args["params"], args["x_real"], args["z"])


GAN = [
    ("gan.qp_losses", lambda: gan.qp_losses(T, jnp.zeros(5), X, X), ValueError,
     "t_real and t_fake"),
    ("gan.qp_losses", lambda: gan.qp_losses(jnp.zeros((4, 2)), jnp.zeros((4, 2)), X, X),
     ValueError, "t_real"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, jnp.zeros((4, 2))), ValueError,
     "x_real and x_fake"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, jnp.zeros((5, 3)), jnp.zeros((5, 3))),
     ValueError, "x_real"),
    ("gan.qp_losses", lambda: jax.jit(gan.qp_losses)(T, jnp.zeros(5), X, X), ValueError,
     "t_real and t_fake"),
    ("gan.qp_losses", lambda: gan.qp_losses(T.astype(complex), T, X, X), TypeError,
     "t_real.*complex"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X.astype(bool)), TypeError, "x_fake.*bool"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, None, X, X), TypeError, "t_fake"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, "x", X), TypeError, "x_real"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, distance="cosine"), ValueError,
     "distance"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, distance=1), ValueError, "distance"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, lam=0.0), ValueError, "lam"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, lam=-1.0), ValueError, "lam"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, lam=np.float32(-1)), ValueError, "lam"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, lam=jnp.array(-1.0)), ValueError, "lam"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, lam=NAN), ValueError, "lam"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, lam=np.inf), ValueError, "lam.*finite"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, lam="10"), TypeError, "lam"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, lam=None), TypeError, "lam"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, lam=jnp.ones(2)), TypeError,
     "lam.*scalar"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X.at[0, 0].set(jnp.nan), X), ValueError,
     "x_real must be finite"),
    ("gan.qp_losses", lambda: gan.qp_losses(E0, E0, jnp.ones((0, 3)), jnp.ones((0, 3))),
     ValueError, "t_real must hold at least one"),
    ("gan.hinge_losses", lambda: gan.hinge_losses(T, jnp.zeros(3)), ValueError,
     "t_real and t_fake"),
    ("gan.hinge_losses", lambda: gan.hinge_losses(jnp.zeros(()), jnp.zeros(())), ValueError,
     "t_real.*shape"),
    ("gan.hinge_losses", lambda: gan.hinge_losses(T, T.astype(jnp.complex64)), TypeError,
     "t_fake"),
    ("gan.hinge_losses", lambda: gan.hinge_losses("a", T), TypeError, "t_real"),
    ("gan.hinge_losses", lambda: gan.hinge_losses(T, T.at[1].set(jnp.inf)), ValueError,
     "t_fake must be finite"),
    ("gan.hinge_losses", lambda: gan.hinge_losses(E0, E0), ValueError, "t_real must hold"),
    ("gan.single_loss", lambda: gan.single_loss(gan.qp_losses, None, abs), TypeError,
     "generator"),
    ("gan.single_loss", lambda: gan.single_loss(gan.qp_losses, abs, "D"), TypeError,
     "discriminator"),
    ("gan.single_loss", lambda: gan.single_loss("qp", abs, abs), TypeError, "losses"),
    ("gan.single_loss", lambda: gan.single_loss(gan.qp_losses, abs, abs, g_weight=-1.0),
     ValueError, "g_weight"),
    ("gan.single_loss", lambda: gan.single_loss(gan.qp_losses, abs, abs,
                                                g_weight=np.float32(-1)), ValueError, "g_weight"),
    ("gan.single_loss", lambda: gan.single_loss(gan.qp_losses, abs, abs,
                                                g_weight=jnp.array(-1.0)), ValueError, "g_weight"),
    ("gan.single_loss", lambda: gan.single_loss(gan.qp_losses, abs, abs, g_weight=np.nan),
     ValueError, "g_weight"),
    ("gan.single_loss", lambda: gan.single_loss(gan.qp_losses, abs, abs, g_weight="1"),
     TypeError, "g_weight"),
    ("gan.single_loss", lambda: gan.single_loss(gan.qp_losses, abs, abs, g_weight=None),
     TypeError, "g_weight"),
    ("gan.single_loss", lambda: single_loss_of_mlps(params={"generator": {}}), ValueError,
     "params"),
    ("gan.single_loss", lambda: single_loss_of_mlps(params=[1, 2]), ValueError, "params"),
    ("gan.single_loss", lambda: single_loss_of_mlps(x_real=jnp.zeros((6, 2))), ValueError,
     "generator.*x_real"),
    # The sweep of issue 24: the bool rule, empty pairs, closed-over data, what G returns.
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, jnp.zeros((4, 0)), jnp.zeros((4, 0))),
     ValueError, "x_real must have at least one entry per pair"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, lam=True), TypeError,
     "lam must be a real number, got bool"),
    ("gan.qp_losses", lambda: gan.qp_losses(T.astype(bool), T, X, X), TypeError,
     "t_real.*bool"),
    ("gan.qp_losses", lambda: jax.jit(lambda: gan.qp_losses(T, T, X_NAN, X))(), ValueError,
     "x_real must be finite"),
    ("gan.qp_losses", lambda: gan.qp_losses(T, T, X, X, 10.0), TypeError, "positional"),
    ("gan.hinge_losses", lambda: gan.hinge_losses(T.astype(bool), T), TypeError, "t_real.*bool"),
    ("gan.single_loss", lambda: gan.single_loss(gan.qp_losses, abs, abs, g_weight=True),
     TypeError, "g_weight must be a real number, got bool"),
    ("gan.single_loss", lambda: single_loss_of_mlps(x_real=X_NAN), ValueError,
     "x_real must be finite"),
    ("gan.single_loss", lambda: single_loss_of_mlps(generator=lambda p, z: jnp.round(
        z @ p).astype(jnp.int32)), TypeError, "generator.*floating samples"),
    ("gan.single_loss", lambda: single_loss_of_mlps(losses=lambda *a: jnp.float32(0)),
     TypeError, "losses must return a pair"),
]  # fmt: skip

# ----------------------------------------------------------------------------- em
# The kinds tests/em does not cover yet; part of issue 14 adds NaN and key checks there.

P2 = jnp.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
COUNTS = jnp.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
TOPICS = jnp.full((2, 3), 1 / 3)
MB_STATE = em.minibatch_kmeans(2, init=P2[:2]).init(KEY, P2)


def one_generator():
    """A callable that returns the same generator every time (exhausted after one pass)."""
    gen = (b for b in [np.asarray(P2)])
    return lambda: gen


EM = [
    ("em.kmeans", lambda: em.kmeans(KEY, P2, 2, tol=jnp.array(-1.0)), ValueError, "tol"),
    ("em.kmeans", lambda: em.kmeans(KEY, P2.at[0, 0].set(jnp.nan), 2), ValueError, "x"),
    ("em.kmeans", lambda: em.kmeans(KEY, P2.astype(jnp.complex64), 2), TypeError, "x"),
    ("em.kmeans", lambda: em.kmeans(0, P2, 2), TypeError, "key"),
    ("em.soft_kmeans", lambda: em.soft_kmeans(KEY, P2.at[1, 1].set(jnp.inf), 2, stiffness=1.0),
     ValueError, "x"),
    ("em.kmeans_plusplus", lambda: em.kmeans_plusplus(KEY, P2.astype(jnp.complex64), 2),
     TypeError, "x"),
    ("em.kmeans_plusplus", lambda: em.kmeans_plusplus(KEY, P2, 5), ValueError, "num_clusters"),
    ("em.assign", lambda: em.assign(P2.at[0, 0].set(jnp.nan), P2[:2]), ValueError, "x"),
    ("em.minibatch_kmeans", lambda: em.minibatch_kmeans(2, reassignment_ratio=None), TypeError,
     "reassignment_ratio"),
    ("em.fit_minibatch_kmeans", lambda: em.fit_minibatch_kmeans(KEY, [np.zeros((4, 2))], 2,
                                                                num_passes="1"), TypeError,
     "num_passes"),
    ("em.plsa", lambda: em.plsa(KEY, COUNTS, 2, tol="small"), TypeError, "tol"),
    ("em.plsa", lambda: em.plsa(KEY, COUNTS.astype(jnp.complex64), 2), TypeError, "counts"),
    ("em.plsa", lambda: em.plsa(KEY, jnp.zeros((0, 3)), 2), ValueError, "counts"),
    ("em.plsa_fold_in", lambda: em.plsa_fold_in(KEY, COUNTS.astype(jnp.complex64), TOPICS),
     TypeError, "counts"),
    ("em.plsa_log_likelihood", lambda: em.plsa_log_likelihood(COUNTS, TOPICS[:, :2],
                                                              jnp.full((2, 2), 0.5)), ValueError,
     "p_w_given_z"),
    ("em.plsa_log_likelihood", lambda: em.plsa_log_likelihood(
        COUNTS.astype(jnp.complex64), TOPICS, jnp.full((2, 2), 0.5)), TypeError, "counts"),
    ("em.soft_kmeans", lambda: em.soft_kmeans(0, P2, 2, stiffness=1.0), TypeError, "key"),
    ("em.kmeans_plusplus", lambda: em.kmeans_plusplus(0, P2, 2), TypeError, "key"),
    ("em.kmeans_plusplus", lambda: em.kmeans_plusplus(KEY, P2.at[0, 0].set(jnp.nan), 2),
     ValueError, "x"),
    ("em.assign", lambda: em.assign(P2.astype(jnp.complex64), P2[:2]), TypeError, "x"),
    ("em.fit_minibatch_kmeans", lambda: em.fit_minibatch_kmeans(0, [np.zeros((4, 2))], 2,
                                                                progress=False), TypeError, "key"),
    ("em.plsa", lambda: em.plsa(0, COUNTS, 2), TypeError, "key"),
    ("em.fit_minibatch_kmeans", lambda: em.fit_minibatch_kmeans(
        KEY, [np.full((4, 2), np.nan)], 2, progress=False), ValueError, "batches must be finite"),
    ("em.kmeans", lambda: em.kmeans(KEY, P2, 2, tol=None), TypeError, "tol"),
    ("em.kmeans", lambda: em.kmeans(KEY, P2, 2, init=P2[:2].at[0, 0].set(jnp.nan)), ValueError,
     "init"),
    ("em.soft_kmeans", lambda: em.soft_kmeans(KEY, P2, 2, stiffness=jnp.array(-1.0)),
     ValueError, "stiffness"),
    ("em.plsa", lambda: em.plsa(KEY, COUNTS, 2, tol=np.float32(-1)), ValueError, "tol"),
    ("em.plsa_log_likelihood", lambda: em.plsa_log_likelihood(
        COUNTS.at[0, 0].set(jnp.nan), TOPICS, jnp.full((COUNTS.shape[0], 2), 0.5)), ValueError,
     "counts"),
    ("em.plsa_fold_in", lambda: em.plsa_fold_in(0, COUNTS, TOPICS), TypeError, "key"),
    ("em.plsa_fold_in", lambda: em.plsa_fold_in(KEY, jnp.zeros((0, 3)), TOPICS), ValueError,
     "counts"),
    ("em.plsa_log_likelihood", lambda: em.plsa_log_likelihood(
        jnp.zeros((0, 3)), TOPICS, jnp.full((0, 2), 0.5)), ValueError, "counts"),
    # issue 24: sparse matrices, bools, the renamed and explicit options
    ("em.kmeans", lambda: em.kmeans(KEY, scipy.sparse.csr_matrix(np.asarray(P2)), 2), TypeError,
     "x must be a dense array"),
    ("em.kmeans", lambda: em.kmeans(KEY, sparse.BCOO.fromdense(P2), 2), TypeError,
     "x must be a dense array"),
    ("em.assign", lambda: em.assign(scipy.sparse.csr_matrix(np.asarray(P2)), P2[:2]), TypeError,
     "x must be a dense array"),
    ("em.soft_kmeans", lambda: em.soft_kmeans(KEY, sparse.BCOO.fromdense(P2), 2, stiffness=1.0),
     TypeError, "x must be a dense array"),
    ("em.minibatch_kmeans", lambda: em.minibatch_kmeans(2).init(
        KEY, scipy.sparse.csr_matrix(np.asarray(P2))), TypeError, "x_first must be a dense"),
    ("em.fit_minibatch_kmeans", lambda: em.fit_minibatch_kmeans(
        KEY, [scipy.sparse.csr_matrix(np.asarray(P2))], 2), TypeError, "batch must be a dense"),
    ("em.plsa", lambda: em.plsa(KEY, scipy.sparse.csr_matrix(np.asarray(COUNTS)), 2), TypeError,
     "counts must be a dense array or a jax.experimental.sparse.BCOO"),
    ("em.kmeans", lambda: em.kmeans(KEY, P2 > 0, 2), TypeError, "x must be a real .int or float"),
    ("em.kmeans", lambda: em.kmeans(KEY, P2, 2, weights=np.ones(4, bool)), TypeError,
     "weights must be a real"),
    ("em.plsa", lambda: em.plsa(KEY, COUNTS > 0, 2), TypeError, "counts must be a real"),
    ("em.plsa", lambda: em.plsa(KEY, sparse.BCOO((jnp.ones(2, bool), jnp.array([[0, 0], [1, 2]])),
                                                 shape=(2, 3)), 2), TypeError,
     "counts must be a real"),
    ("em.plsa_fold_in", lambda: em.plsa_fold_in(KEY, COUNTS, TOPICS > 0), TypeError,
     "p_w_given_z must be a real"),
    ("em.plsa_log_likelihood", lambda: em.plsa_log_likelihood(COUNTS, -TOPICS,
                                                              jnp.full((2, 2), 0.5)),
     ValueError, "p_w_given_z must be non-negative"),
    ("em.kmeans", lambda: em.kmeans(KEY, P2, 2, num_iters=5), TypeError, "num_iters"),
    ("em.fit_minibatch_kmeans", lambda: em.fit_minibatch_kmeans(KEY, [np.zeros((4, 2))], 2,
                                                                progress="yes"), TypeError,
     "progress must be a bool"),
    # NumPy data closed over in a jit are concrete: checked (they were staged, unchecked)
    ("em.kmeans", lambda: jax.jit(lambda: em.kmeans(KEY, np.full((4, 2), np.nan), 2))(),
     ValueError, "x must be finite"),
    ("em.plsa", lambda: jax.jit(lambda: em.plsa(KEY, -np.ones((2, 3)), 2))(), ValueError,
     "counts must be non-negative"),
    ("em.kmeans_plusplus", lambda: em.kmeans_plusplus(KEY, P2, 3, weights=np.r_[1.0, 1, 0, 0]),
     ValueError, "weights must have at least 3 positive entries"),
    ("em.fit_minibatch_kmeans", lambda: em.fit_minibatch_kmeans(KEY, lambda: 3, 2), TypeError,
     "batches.. must return an iterable"),
    ("em.fit_minibatch_kmeans", lambda: em.fit_minibatch_kmeans(KEY, [[[0.0], [1.0, 2.0]]], 2),
     TypeError, "each batch must be a 2-D array .rows, d., got a ragged list"),
    # issue 29, item 5: an int32 state would truncate the float batch
    ("em.minibatch_kmeans", lambda: em.minibatch_kmeans(2).update(
        MB_STATE._replace(centroids=MB_STATE.centroids.astype(jnp.int32)), P2), TypeError,
     "state.centroids and state.counts must be floating"),
    # issue 29, item 7: the callable hands back one generator, exhausted after pass 1
    ("em.fit_minibatch_kmeans", lambda: em.fit_minibatch_kmeans(
        KEY, one_generator(), 2, num_passes=2, progress=False), ValueError,
     "pass 2 of 2.*callable must return a fresh iterator"),
]  # fmt: skip

# ----------------------------------------------------------------------------- attribution
# Likewise the kinds tests/attribution does not cover yet.

IG, SG, EG = (
    attribution.integrated_gradients,
    attribution.smooth_grad,
    attribution.expected_gradients,
)
EMB = jnp.ones((3, 2))
SEQ = attribution.sequence_attributions
VEC2 = lambda z: jnp.stack([z.sum(), (z**2).sum()])  # noqa: E731
LM2 = lambda e: jnp.cumsum(e, axis=0)  # a causal "LM" with a vocabulary of 2  # noqa: E731
ATTRIBUTION = [
    ("attribution.integrated_gradients", lambda: IG(sq, V3, steps="8"), TypeError, "steps"),
    ("attribution.integrated_gradients", lambda: IG(sq, C3), TypeError, "x"),
    ("attribution.integrated_gradients", lambda: IG(sq, NAN3), ValueError, "x"),
    ("attribution.integrated_gradients", lambda: IG(sq, {}), ValueError, "x"),
    ("attribution.integrated_gradients", lambda: IG(sq, V3, method="adaptive",
                                                    tol=jnp.array(-1.0)), ValueError, "tol"),
    ("attribution.integrated_gradients", lambda: IG(sq, V3, method="adaptive", tol="small"),
     TypeError, "tol"),
    ("attribution.smooth_grad", lambda: SG(KEY, sq, V3, stdev="0.1"), TypeError, "stdev"),
    ("attribution.smooth_grad", lambda: SG(KEY, sq, V3, stdev=jnp.array(-1.0)), ValueError,
     "stdev"),
    ("attribution.smooth_grad", lambda: SG(KEY, sq, C3, stdev=0.1), TypeError, "x"),
    ("attribution.expected_gradients", lambda: EG(KEY, sq, V3, jnp.ones((2, 3)),
                                                  num_samples=0), ValueError, "num_samples"),
    ("attribution.expected_gradients", lambda: EG(KEY, sq, C3, jnp.ones((2, 3))), TypeError,
     "x"),
    ("attribution.layer_integrated_gradients", lambda: attribution.layer_integrated_gradients(
        jnp.sin, sq, C3), TypeError, "x"),
    ("attribution.layer_conductance", lambda: attribution.layer_conductance(jnp.sin, sq, C3),
     TypeError, "x"),
    ("attribution.layer_conductance", lambda: attribution.layer_conductance(jnp.sin, sq, V3,
                                                                            steps=None),
     TypeError, "steps"),
    ("attribution.quadrature", lambda: attribution.quadrature("trapezoid", 0), ValueError,
     "steps"),
    ("attribution.quadrature", lambda: attribution.quadrature("simpson", 8), ValueError,
     "method"),
    ("attribution.quadrature", lambda: attribution.quadrature("trapezoid", "8"), TypeError,
     "steps"),
    ("attribution.render_html", lambda: attribution.render_html(["a", "b"], [1.0]), ValueError,
     "scores"),
    ("attribution.token_attributions", lambda: attribution.token_attributions(
        sq, EMB.astype(jnp.complex64)), TypeError, "embeddings"),
    ("attribution.token_attributions", lambda: attribution.token_attributions(sq, EMB,
                                                                              reduce="max"),
     ValueError, "reduce"),
    ("attribution.token_scores", lambda: attribution.token_scores(EMB, reduce="max"), ValueError,
     "reduce"),
    ("attribution.token_scores", lambda: attribution.token_scores(jnp.ones(3)), ValueError,
     "attributions"),
    ("attribution.smooth_grad", lambda: SG(0, sq, V3, stdev=0.1), TypeError, "key"),
    ("attribution.smooth_grad", lambda: SG(KEY, sq, NAN3, stdev=0.1), ValueError, "x"),
    ("attribution.expected_gradients", lambda: EG(0, sq, V3, jnp.ones((2, 3))), TypeError,
     "key"),
    ("attribution.expected_gradients", lambda: EG(KEY, sq, V3, jnp.ones((2, 3)).at[0, 0].set(
        jnp.nan)), ValueError, "baselines"),
    ("attribution.expected_gradients", lambda: EG(KEY, sq, V3, jnp.ones((0, 3))), ValueError,
     "baselines"),
    ("attribution.layer_integrated_gradients", lambda: attribution.layer_integrated_gradients(
        jnp.sin, sq, NAN3), ValueError, "x"),
    ("attribution.layer_integrated_gradients", lambda: attribution.layer_integrated_gradients(
        jnp.sin, sq, {}), ValueError, "x"),
    ("attribution.layer_conductance", lambda: attribution.layer_conductance(jnp.sin, sq, NAN3),
     ValueError, "x"),
    ("attribution.token_attributions", lambda: attribution.token_attributions(
        sq, EMB.at[0, 0].set(jnp.nan)), ValueError, "embeddings"),
    ("attribution.token_attributions", lambda: attribution.token_attributions(sq, EMB,
                                                                              steps="8"),
     TypeError, "steps"),
    ("attribution.token_scores", lambda: attribution.token_scores(EMB.astype(jnp.complex64)),
     TypeError, "attributions"),
    ("attribution.render_html", lambda: attribution.render_html(["a", "b"], [1.0, np.nan]),
     ValueError, "scores"),
    ("attribution.render_html", lambda: attribution.render_html(
        ["a", "b"], [1.0, 2.0], max_opacity=jnp.array(-1.0)), ValueError, "max_opacity"),
    ("attribution.heatmap_overlay", lambda: attribution.heatmap_overlay(
        np.zeros((4, 4)), np.zeros((3, 3))), ValueError, "attributions"),
    ("attribution.heatmap_overlay", lambda: attribution.heatmap_overlay(
        np.zeros((4, 4)), np.full((4, 4), np.nan)), ValueError, "attributions must be finite"),
    ("attribution.render_html", lambda: attribution.render_html("ab", [1.0, 2.0]), TypeError,
     "tokens must be a sequence"),
    ("attribution.token_scores", lambda: attribution.token_scores(jnp.ones((0, 2))), ValueError,
     "attributions must be non-empty"),
    # Many targets (issue 27): int indices in range of fun's (C,) output.
    ("attribution.integrated_gradients", lambda: IG(VEC2, V3, targets=[0.0]), TypeError,
     "targets"),
    ("attribution.integrated_gradients", lambda: IG(VEC2, V3, targets=[2]), ValueError,
     r"targets must be indices in \[0, 2\)"),
    ("attribution.integrated_gradients", lambda: IG(sq, V3, targets=[0]), ValueError,
     "fun must return a vector"),
    ("attribution.smooth_grad", lambda: SG(KEY, VEC2, V3, stdev=0.1, targets=[True]),
     TypeError, "targets"),
    ("attribution.expected_gradients", lambda: EG(KEY, VEC2, V3, jnp.ones((2, 3)),
                                                  targets=[[0]]), ValueError, "targets"),
    ("attribution.layer_integrated_gradients", lambda: attribution.layer_integrated_gradients(
        jnp.sin, VEC2, V3, targets=[-1]), ValueError, "targets"),
    ("attribution.sequence_attributions", lambda: SEQ(LM2, EMB, jnp.array([0.0])), TypeError,
     "generated"),
    ("attribution.sequence_attributions", lambda: SEQ(LM2, EMB, jnp.array([2])), ValueError,
     "generated"),
    ("attribution.sequence_attributions", lambda: SEQ(LM2, EMB, jnp.array([0, 1, 1])),
     ValueError, "generated must be shorter"),
    ("attribution.sequence_attributions", lambda: SEQ(LM2, EMB, jnp.array([1]),
                                                      method="saliency"), ValueError, "method"),
    ("attribution.sequence_attributions", lambda: SEQ(LM2, EMB[0], jnp.array([1])), ValueError,
     "embeddings"),
    ("attribution.sequence_attributions", lambda: SEQ(LM2, EMB.at[0, 0].set(jnp.nan),
                                                      jnp.array([1])), ValueError, "embeddings"),
    ("attribution.sequence_attributions", lambda: SEQ(jnp.sum, EMB, jnp.array([1])), ValueError,
     "fun must map"),
    ("models.CausalLM", lambda: models.CausalLM(8, d_model=8, num_heads=1, max_len=4).init(
        KEY, jnp.zeros(5, jnp.int32)), ValueError, "max_len=4"),
    ("models.CausalLM", lambda: models.CausalLM(8, d_model=10, num_heads=3).init(
        KEY, jnp.zeros(2, jnp.int32)), ValueError, "d_model"),
    ("models.TransformerClassifier", lambda: models.TransformerClassifier(
        8, d_model=8, num_heads=1).init(KEY), ValueError, "tokens and embeddings"),
]  # fmt: skip

# ----------------------------------------------------------------------------- datasets, models


def fit(**overrides):
    args = {
        "key": KEY, "loss_fn": lambda p, b, k: jnp.mean((b[0] @ p - b[1]) ** 2),
        "params": jnp.zeros(2), "arrays": (jnp.ones((8, 2)), jnp.ones(8)),
        "optimizer": optax.sgd(0.1), "steps": 2, "batch_size": 4, "progress": False,
        **overrides,
    }  # fmt: skip
    key, loss_fn, params, arrays = (args.pop(k) for k in ("key", "loss_fn", "params", "arrays"))
    return models.fit(key, loss_fn, params, arrays, **args)


VOCAB = datasets.CharVocab(("<pad>", "<unk>", "a"))
DATA_AND_MODELS = [
    ("datasets.ring_modes", lambda: datasets.ring_modes(0), ValueError, "num_modes"),
    ("datasets.ring_modes", lambda: datasets.ring_modes("8"), TypeError, "num_modes"),
    ("datasets.ring_modes", lambda: datasets.ring_modes(8, radius=None), TypeError, "radius"),
    ("datasets.ring_of_gaussians", lambda: datasets.ring_of_gaussians(0, 10), TypeError, "key"),
    ("datasets.ring_of_gaussians", lambda: datasets.ring_of_gaussians(KEY, 0), ValueError, "n"),
    ("datasets.ring_of_gaussians", lambda: datasets.ring_of_gaussians(KEY, 10,
                                                                      std=jnp.array(-1.0)),
     ValueError, "std"),
    ("datasets.plsa_corpus", lambda: datasets.plsa_corpus(0, 4, 5, 2), TypeError, "key"),
    ("datasets.plsa_corpus", lambda: datasets.plsa_corpus(KEY, 4, 5, 0), ValueError,
     "num_topics"),
    ("datasets.plsa_corpus", lambda: datasets.plsa_corpus(KEY, 4, 5, 2, concentration="0.1"),
     TypeError, "concentration"),
    ("datasets.plsa_corpus", lambda: datasets.plsa_corpus(KEY, 4, 5, 2,
                                                          concentration=jnp.array(0.0)),
     ValueError, "concentration"),
    ("datasets.load_sample_image", lambda: datasets.load_sample_image("x.jpg"), ValueError,
     "name"),
    ("datasets.load_sentiment", lambda: datasets.load_sentiment(test_fraction=1.5), ValueError,
     "test_fraction"),
    ("datasets.load_sentiment", lambda: datasets.load_sentiment(test_fraction=None), TypeError,
     "test_fraction"),
    ("datasets.make_blobs", lambda: datasets.make_blobs(0, 2, 2), ValueError, "n_samples"),
    ("datasets.make_blobs", lambda: datasets.make_blobs(8, 2, 2, cluster_std="1"), TypeError,
     "cluster_std"),
    ("datasets.CharVocab", lambda: datasets.CharVocab.build(["ab"], min_count=0), ValueError,
     "min_count"),
    ("datasets.CharVocab", lambda: VOCAB.encode(["a"], max_len=0), ValueError, "max_len"),
    ("datasets.CharVocab", lambda: VOCAB.encode("a", max_len=2), TypeError, "texts"),
    ("models.fit", lambda: fit(key=0), TypeError, "key"),
    ("models.fit", lambda: fit(loss_fn=None), TypeError, "loss_fn"),
    ("models.fit", lambda: fit(steps=0), ValueError, "steps"),
    ("models.fit", lambda: fit(batch_size="4"), TypeError, "batch_size"),
    ("models.fit", lambda: fit(batch_size=9), ValueError, "batch_size"),
    ("models.fit", lambda: fit(arrays=(jnp.ones((0, 2)), jnp.ones(0))), ValueError, "arrays"),
    ("models.fit", lambda: fit(arrays=(jnp.ones((8, 2)), jnp.ones(7))), ValueError, "arrays"),
    ("models.fit", lambda: fit(optimizer=optax.sgd), TypeError, "optimizer"),
    ("models.DCGANGenerator", lambda: models.DCGANGenerator(resolution=12).init(
        KEY, jnp.zeros((1, 16))), ValueError, "resolution"),
    ("models.DCGANCritic", lambda: models.DCGANCritic(resolution=8).init(
        KEY, jnp.zeros((1, 4, 4, 1))), ValueError, "x must be"),
]  # fmt: skip

ROWS = NEWTON + REGULARIZERS + OPTIM + GAN + EM + ATTRIBUTION + DATA_AND_MODELS


def row_ids():
    seen: dict[str, int] = {}
    for name, *_ in ROWS:
        seen[name] = seen.get(name, 0) + 1
        yield f"{name}-{seen[name]}"


@pytest.mark.parametrize(("name", "call", "error", "match"), ROWS, ids=list(row_ids()))
def test_bad_input_names_the_argument(name, call, error, match):
    with pytest.raises(error, match=match):
        call()


def is_result_container(obj) -> bool:
    """NamedTuples (results, states) and enums: data, not functions to call with input."""
    return inspect.isclass(obj) and (
        (issubclass(obj, tuple) and hasattr(obj, "_fields")) or issubclass(obj, enum.Enum)
    )


def public_callables() -> set[str]:
    names = set()
    for module_name in MODULES:
        module = importlib.import_module(f"gradjax.{module_name}")
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not is_result_container(obj):
                names.add(f"{module_name}.{name}")
    return names


def test_the_table_covers_every_public_function():
    covered = {name for name, *_ in ROWS}
    public = public_callables()
    assert set(EXEMPT) <= public, sorted(set(EXEMPT) - public)
    assert not covered & set(EXEMPT), sorted(covered & set(EXEMPT))
    assert covered == public - set(EXEMPT), {
        "without a row": sorted(public - set(EXEMPT) - covered),
        "not public": sorted(covered - public),
    }


# ------------------------------------------------- edge input with a documented outcome
# Edge cases whose answer is a result, not an exception (issue 29): a row is
# ``(function, call, check)``; ``check(call())`` asserts the documented outcome (a
# status, or the value the docstring names). Each row failed on the code before it.
# One list per area, as above, so the areas' rows stay apart.


def _singular_jacobian():
    # f = (p₀ − a)² + 0·p₁: H = diag(2, 0) at x*; the least-norm adjoint gives [1, 0].
    fun = lambda p, a: (p[0] - a) ** 2 + 0.0 * p[1]  # noqa: E731
    return jax.jacobian(lambda a: newton.minimize(fun, jnp.zeros(2), a).params)(0.5)


def _unrolled_exact_gd():
    # f = ½θx² − x, x* = 1/θ, dx*/dθ = -1/θ² = -0.25 at θ = 2; GD with η = 1/θ lands on
    # x* in one step from 0, a step that does not depend on θ.
    fun = lambda x, theta: 0.5 * theta * x**2 - x  # noqa: E731

    def solve(theta):
        return newton.minimize(
            fun, 0.0, theta, method="gradient_descent", learning_rate=0.5, adjoint="unrolled"
        ).params

    return jax.grad(solve)(2.0)


def _singular_minimum_cg():
    # Issue 28: (jᵀx − 1)², j = 1..3, float64: CG read a rounding-level pᵀHp as negative.
    with jax.enable_x64(True):
        j = jnp.arange(1.0, 4.0)
        out = newton.minimize(
            lambda x: (j @ x - 1) ** 2, jnp.ones(3), method="newton_cg", num_steps=200, tol=1e-8
        )
        return int(out.status)


def _is_status(status, steps=None):
    def check(out):
        assert np.all(np.asarray(out.status) == status), np.asarray(out.status)
        if steps is not None:
            assert int(out.num_steps) == steps

    return check


def _moves_nothing(out):
    _is_status(newton.Status.SUCCESS, 0)(out)
    np.testing.assert_array_equal(out.params, jnp.ones(3))


OUTCOMES_NEWTON: list = [
    ("newton.minimize", _singular_jacobian,
     lambda jac: np.testing.assert_allclose(jac, [1.0, 0.0], rtol=1e-5, atol=1e-6)),
    ("newton.minimize", lambda: newton.minimize(wrong_sign_square, V3,
                                                method="gradient_descent", learning_rate=0.1),
     _is_status(newton.Status.NO_DESCENT)),
    ("newton.minimize", lambda: newton.minimize(lambda p: 1.0, V3, method="newton_cg"),
     _moves_nothing),
    ("newton.minimize", lambda: newton.minimize(lambda p: 1.0, V3, method="gradient_descent",
                                                learning_rate=0.1), _moves_nothing),
    ("newton.minimize", _unrolled_exact_gd,
     lambda g: np.testing.assert_allclose(g, -0.25, rtol=1e-5)),
    ("newton.minimize", _singular_minimum_cg, lambda status: np.testing.assert_equal(
        status, int(newton.Status.SUCCESS))),
]  # fmt: skip

OUTCOMES_ATTRIBUTION: list = [
    # Adaptive IG reports why it stopped: the tolerance met, the budget spent, or NaN.
    ("attribution.integrated_gradients", lambda: IG(
        lambda z: jnp.sum(z**3), V3, method="adaptive", steps=15, return_gap=True),
     lambda r: int(r.status) == newton.Status.SUCCESS and bool(r.converged)),
    ("attribution.integrated_gradients", lambda: IG(
        lambda z: jax.nn.sigmoid(60 * (jnp.sum(z) - 1.5)), V3, method="adaptive", steps=15,
        tol=1e-10, return_gap=True),
     lambda r: int(r.status) == newton.Status.MAX_STEPS and not bool(r.converged)),
    ("attribution.integrated_gradients", lambda: jax.jit(lambda x: IG(
        lambda z: jnp.sum(jnp.log(z - 0.5)), x, method="adaptive", steps=45, return_gap=True))(
        jnp.ones(3)), lambda r: int(r.status) == newton.Status.NONFINITE and not bool(r.converged)),
]  # fmt: skip


def traced_pgd(x=V3 * 0.5, norm="linf", **options):
    """pgd_perturbation with x and every numeric option traced (passed into jit)."""
    options = {"epsilon": 0.1, **options}
    return jax.jit(lambda x, o: reg.pgd_perturbation(KEY, sq, x, norm=norm, **o))(x, options)


def all_nan(tree):
    assert all(jnp.all(jnp.isnan(leaf)) for leaf in jax.tree.leaves(tree)), tree


def linf_at_most(eps):
    def check(delta):
        assert jnp.max(jnp.abs(delta)) <= eps * (1 + 1e-6), delta

    return check


def l2_at_most(eps):
    def check(delta):
        assert jnp.linalg.norm(delta) <= eps * (1 + 1e-6), delta

    return check


def two_player_grads(g_weight):
    """single_loss's gradients with a traced g_weight (a linear generator and critic)."""
    params = {"generator": jnp.ones(2), "discriminator": jnp.ones(2)}
    x = jnp.array([[1.0, 2.0], [3.0, 4.0]])

    @jax.jit
    def grads(w):
        loss_fn = gan.single_loss(
            gan.hinge_losses, lambda p, z: p * z, lambda p, x: jnp.sum(p * x, axis=1), g_weight=w
        )
        return jax.grad(loss_fn, has_aux=True)(params, x, x)[0]

    return grads(g_weight)


OUTCOMES_REGULARIZERS = [
    # Issue 29, item 9: a traced x outside the bounds still gets ‖δ‖ ≤ ε (was |δ|∞ = 0.3).
    ("regularizers.pgd_perturbation", lambda: traced_pgd(
        jnp.full(3, 1.3), bounds=(-1.0, 1.0)), linf_at_most(0.1)),
    ("regularizers.pgd_perturbation", lambda: traced_pgd(
        jnp.full(3, 1.3), bounds=(-1.0, 1.0), norm="l2"), l2_at_most(0.1)),
    # Issue 29, item 10: a traced negative ε gives NaN (was a finite δ of −ε).
    ("regularizers.pgd_perturbation", lambda: traced_pgd(epsilon=-0.1), all_nan),
    ("regularizers.pgd_perturbation", lambda: traced_pgd(step_size=-0.05), all_nan),
    ("regularizers.pgd_perturbation", lambda: traced_pgd(bounds=(1.0, 0.0)), all_nan),
    ("regularizers.trades_loss", lambda: jax.jit(lambda e: reg.trades_loss(
        KEY, two_logits, V3, epsilon=e))(-0.1), all_nan),
    # The same rule for every non-negative option of the regularisers, traced.
    ("regularizers.fgm_perturbation", lambda: jax.jit(lambda e: reg.fgm_perturbation(
        sq, V3, epsilon=e))(-1.0), all_nan),
    ("regularizers.adversarial_loss", lambda: jax.jit(lambda e: reg.adversarial_loss(
        sq, V3, epsilon=e))(-1.0), all_nan),
    ("regularizers.vat_direction", lambda: jax.jit(lambda xi: reg.vat_direction(
        KEY, two_logits, V3, xi=xi))(-1.0), all_nan),
    ("regularizers.vat_loss", lambda: jax.jit(lambda e: reg.vat_loss(
        KEY, two_logits, V3, epsilon=e))(-1.0), all_nan),
    ("regularizers.noisy_loss", lambda: jax.jit(lambda s: reg.noisy_loss(
        KEY, sq, V3, stdev=s))(-1.0), all_nan),
    # GAN: a traced λ <= 0 or a negative g_weight gives NaN, not a finite loss of the wrong sign.
    ("gan.qp_losses", lambda: jax.jit(lambda lam: gan.qp_losses(
        jnp.ones(4), T, X, X + 1, lam=lam)[0])(-1.0), all_nan),
    ("gan.qp_losses", lambda: jax.jit(lambda lam: gan.qp_losses(
        jnp.ones(4), T, X, X + 1, lam=lam)[0])(0.0), all_nan),
    ("gan.single_loss", lambda: two_player_grads(-1.0)["generator"], all_nan),
]  # fmt: skip


Status_ = importlib.import_module("gradjax").Status


def float64_batch_on_a_float32_state():
    """lax.scan over update: the carry must keep the state's dtypes."""
    km = em.minibatch_kmeans(2, init=P2[:2])
    with jax.enable_x64(True):
        batches = jnp.asarray(np.tile(np.asarray(P2, np.float64), (3, 1, 1)))
        return jax.lax.scan(lambda s, b: (km.update(s, b), None), MB_STATE, batches)[0]


def cosine_with_a_row(row, traced):
    x = jnp.concatenate([jnp.asarray(P2[1:]), jnp.full((1, 2), row, jnp.float32)])
    fit = lambda x: em.kmeans(KEY, x, 2, init=x[:2], metric="cosine")  # noqa: E731
    return jax.jit(fit)(x) if traced else fit(x)


def status_is(name):
    return lambda out: int(out.status) == getattr(Status_, name)


OUTCOMES_EM: list = [
    # issue 29, item 6: the state keeps float32 (it came back float64, and scan failed)
    ("em.minibatch_kmeans", float64_batch_on_a_float32_state,
     lambda s: s.centroids.dtype == s.counts.dtype == jnp.float32
     and int(s.status) == Status_.SUCCESS),
    # issue 29, item 12: a 1e-30 float32 row's norm underflowed (NaN centroids, only
    # converged=False); scaled by its largest entry it keeps its direction (1, 1)/√2
    ("em.kmeans", lambda: cosine_with_a_row(1e-30, traced=False),
     lambda r: int(r.status) == Status_.SUCCESS and bool(jnp.all(jnp.isfinite(r.centroids)))
     and int(r.labels[-1]) == int(r.labels[0])),
    # ... and a zero row, which has no direction, traced: NONFINITE (concrete: ValueError)
    ("em.kmeans", lambda: cosine_with_a_row(0.0, traced=True), status_is("NONFINITE")),
    # a traced NaN point: the refused step keeps the finite start, NONFINITE
    ("em.kmeans", lambda: jax.jit(lambda x: em.kmeans(KEY, x, 2, init=P2[:2]))(
        P2.at[3, 0].set(jnp.nan)),
     lambda r: int(r.status) == Status_.NONFINITE and bool(jnp.all(r.centroids == P2[:2]))),
    ("em.soft_kmeans", lambda: jax.jit(lambda x: em.soft_kmeans(
        KEY, x, 2, stiffness=1.0, init=P2[:2]))(P2.at[3, 0].set(jnp.nan)), status_is("NONFINITE")),
    ("em.kmeans", lambda: em.kmeans(KEY, P2, 2, tol=0.0, num_steps=3), status_is("MAX_STEPS")),
    ("em.plsa", lambda: jax.jit(lambda c: em.plsa(KEY, c, 2))(COUNTS.at[0, 0].set(jnp.nan)),
     status_is("NONFINITE")),
    # a warm start that gives an observed word probability zero: log-likelihood -inf
    ("em.plsa", lambda: em.plsa(None, COUNTS, 2, init=(jnp.array([[1.0, 0, 0], [1.0, 0, 0]]),
                                                       jnp.full((2, 2), 0.5))),
     status_is("NONFINITE")),
    # traced values that the concrete checks would reject: NaN in, NONFINITE out
    ("em.kmeans", lambda: jax.jit(lambda w: em.kmeans(KEY, P2, 2, weights=w))(
        jnp.array([1.0, -1.0, 1.0, 1.0])), status_is("NONFINITE")),
    ("em.soft_kmeans", lambda: jax.jit(lambda m: em.soft_kmeans(KEY, P2, 2, stiffness=m))(
        jnp.float32(-1.0)), status_is("NONFINITE")),
    ("em.plsa", lambda: jax.jit(lambda c: em.plsa(KEY, c, 2))(-COUNTS), status_is("NONFINITE")),
    ("em.plsa_fold_in", lambda: em.plsa_fold_in(KEY, COUNTS, TOPICS), status_is("SUCCESS")),
    ("em.plsa_fold_in", lambda: em.plsa_fold_in(KEY, COUNTS, TOPICS, num_steps=0),
     status_is("MAX_STEPS")),
    ("em.minibatch_kmeans", lambda: jax.jit(em.minibatch_kmeans(2).update)(
        MB_STATE, P2.at[0, 0].set(jnp.nan)),
     lambda s: int(s.status) == Status_.NONFINITE and bool(jnp.all(s.centroids == P2[:2]))),
]  # fmt: skip
OUTCOMES = OUTCOMES_NEWTON + OUTCOMES_EM + OUTCOMES_REGULARIZERS + OUTCOMES_ATTRIBUTION


@pytest.mark.parametrize(
    ("name", "call", "check"), OUTCOMES or [pytest.param(None, None, None, marks=pytest.mark.skip)]
)
def test_edge_input_gets_its_documented_outcome(name, call, check):
    check(call())
