"""Every jittable public em function gives the same result eager, under ``jax.jit`` with
its data passed in, and under ``jax.jit`` with its data closed over (constants).

Closed-over data are concrete while tracing, so the checks on them run (and a value
check on a traced array would fail with a TracerBoolConversionError); passed-in data
are traced, so they do not. Both must compute the same thing. ``fit_minibatch_kmeans``
is left out: it is a host-side driver over Python iterables, not a traceable function.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax import em

KEY = jax.random.key(0)
RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(40, 2)) + np.repeat([[0, 0], [4, 0], [0, 4], [4, 4]], 10, 0),
                jnp.float32)  # fmt: skip
C = X[::10] + 0.5  # (4, 2) centroids
COUNTS = jnp.asarray(RNG.poisson(2.0, size=(12, 20)), jnp.float32)
THETA = jnp.full((12, 3), 1 / 3, jnp.float32)
PHI = jnp.asarray(RNG.dirichlet(np.ones(20), 3), jnp.float32)
KM = em.minibatch_kmeans(4, init=C)
STATE = KM.init(KEY, X)

CASES = {
    "kmeans": (lambda k, x: em.kmeans(k, x, 4, num_iters=3, init="random"), (KEY, X)),
    "kmeans_cosine_init_weights": (
        lambda x, c, w: em.kmeans(KEY, x, 4, num_iters=3, init=c, weights=w, metric="cosine"),
        (X + 1, C + 1, jnp.linspace(0.5, 1.5, 40)),
    ),
    "soft_kmeans_init": (
        lambda x, c: em.soft_kmeans(KEY, x, 4, stiffness=1.0, num_iters=3, init=c), (X, C)
    ),
    "kmeans_plusplus": (lambda k, x: em.kmeans_plusplus(k, x, 4), (KEY, X)),
    "assign": (em.assign, (X, C)),
    "plsa": (lambda k, n: em.plsa(k, n, 3, num_iters=5), (KEY, COUNTS)),
    "plsa_init": (lambda n, p, t: em.plsa(None, n, 3, num_iters=5, init=(p, t)),
                  (COUNTS, PHI, THETA)),
    "plsa_log_likelihood": (em.plsa_log_likelihood, (COUNTS, THETA, PHI)),
    "plsa_fold_in": (lambda k, n, p: em.plsa_fold_in(k, n, p, num_iters=5), (KEY, COUNTS, PHI)),
    "minibatch_init": (KM.init, (KEY, X)),
    "minibatch_update": (KM.update, (STATE, X)),
    "minibatch_assign": (KM.assign, (STATE, X)),
}  # fmt: skip


def key_data(tree):
    """PRNG key leaves as their raw bits, so that chex can compare them."""

    def leaf(a):
        return jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a

    return jax.tree.map(leaf, tree)


@pytest.mark.parametrize("name", CASES)
def test_eager_jit_passed_in_and_jit_closed_over_agree(name):
    fn, args = CASES[name]
    eager = fn(*args)
    passed_in = jax.jit(fn)(*args)
    closed_over = jax.jit(lambda: fn(*args))()
    # float32 round-off between differently fused programs: a few ulps of O(10) values
    chex.assert_trees_all_close(key_data(passed_in), key_data(eager), rtol=1e-5, atol=1e-5)
    chex.assert_trees_all_close(key_data(closed_over), key_data(eager), rtol=1e-5, atol=1e-5)
