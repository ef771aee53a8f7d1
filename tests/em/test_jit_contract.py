"""Every jittable public em function gives the same result eager, under ``jax.jit`` with
its data passed in, and under ``jax.jit`` with its data closed over (constants); and
traced NaN or Inf data show in its result.

Closed-over data are concrete while tracing, so the checks on them run (and a value
check on a traced array would fail with a TracerBoolConversionError); passed-in data
are traced, so they do not. Both must compute the same thing. Traced data cannot be
checked, so a NaN in them must reach the result (``converged`` false, a non-finite
value), never a finite-looking answer; those calls reuse the passed-in compilations.
``fit_minibatch_kmeans`` is left out: it is a host-side driver over Python iterables,
not a traceable function.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import sparse

from gradjax import Status, em

KEY = jax.random.key(0)
FOUR = jnp.int32(4)
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
    # num_clusters and num_steps as a concrete JAX int and a NumPy int (closed over: made
    # inside the traced function, jnp.int32(4) would itself be a tracer, and an error)
    "kmeans": (lambda k, x: em.kmeans(k, x, FOUR, num_steps=np.int64(20), init="random", n_init=2),
               (KEY, X)),
    "kmeans_cosine_init_weights": (
        lambda x, c, w: em.kmeans(KEY, x, 4, num_steps=20, init=c, weights=w, metric="cosine"),
        (X + 1, C + 1, jnp.linspace(0.5, 1.5, 40)),
    ),
    "soft_kmeans_init": (
        lambda x, c: em.soft_kmeans(KEY, x, 4, stiffness=1.0, num_steps=20, init=c), (X, C)
    ),
    "kmeans_plusplus": (lambda k, x: em.kmeans_plusplus(k, x, 4), (KEY, X)),
    "assign": (em.assign, (X, C)),
    "plsa": (lambda k, n: em.plsa(k, n, 3, num_steps=5), (KEY, COUNTS)),
    "plsa_init": (lambda n, p, t: em.plsa(None, n, 3, num_steps=5, init=(p, t)),
                  (COUNTS, PHI, THETA)),
    "plsa_log_likelihood": (em.plsa_log_likelihood, (COUNTS, PHI, THETA)),
    "plsa_log_likelihood_sparse": (em.plsa_log_likelihood, (sparse.BCOO.fromdense(COUNTS),
                                                            PHI, THETA)),
    "plsa_fold_in": (lambda k, n, p: em.plsa_fold_in(k, n, p, num_steps=5), (KEY, COUNTS, PHI)),
    "minibatch_init": (KM.init, (KEY, X)),
    "minibatch_update": (KM.update, (STATE, X, jnp.ones(40))),
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


def nan_at(a, index, value=jnp.nan):
    return a.at[index].set(value)


def not_converged(out):
    """Not converged, and the status says why: NONFINITE."""
    return not bool(out.converged) and int(out.status) == Status.NONFINITE


def no_finite(a):
    return not bool(jnp.any(jnp.isfinite(a)))


NAN_COUNTS = nan_at(COUNTS, (0, 0))
# (case, arguments with one non-finite entry, what the result must show)
TRACED_NAN = [
    ("kmeans", (KEY, nan_at(X, (3, 0))), lambda r: not_converged(r) and no_finite(r.inertia)),
    ("kmeans_cosine_init_weights", (nan_at(X, (3, 0)), C + 1, jnp.ones(40)), not_converged),
    ("kmeans_cosine_init_weights", (X + 1, C + 1, nan_at(jnp.ones(40), 7)), not_converged),
    # an Inf start: the empty-cluster repair could give finite centroids, still not converged
    ("kmeans_cosine_init_weights", (X + 1, nan_at(C + 1, (1, 1), jnp.inf), jnp.ones(40)),
     not_converged),
    ("soft_kmeans_init", (nan_at(X, (3, 0)), C),
     lambda r: not_converged(r) and no_finite(r.inertia)),
    ("soft_kmeans_init", (X, nan_at(C, (1, 1), jnp.inf)), not_converged),
    ("kmeans_plusplus", (KEY, nan_at(X, (3, 0))), no_finite),  # documented: all NaN
    # a NaN centroid makes every distance NaN (no label looks valid); a NaN point, its own
    ("assign", (X, nan_at(C, (1, 0))), lambda r: no_finite(r[1])),
    ("assign", (nan_at(X, (3, 1), jnp.inf), C),
     lambda r: np.array_equal(np.isfinite(r[1]), np.arange(40) != 3)),
    ("plsa", (KEY, NAN_COUNTS), lambda r: not_converged(r) and no_finite(r.log_likelihood)),
    ("plsa_fold_in", (KEY, NAN_COUNTS, PHI),
     lambda r: not_converged(r) and no_finite(r.log_likelihood)),
    ("plsa_log_likelihood", (NAN_COUNTS, PHI, THETA), no_finite),
    ("plsa_log_likelihood_sparse", (sparse.BCOO.fromdense(NAN_COUNTS), PHI, THETA), no_finite),
    # a NaN weight: the update is refused (the last finite centroids stay), NONFINITE
    ("minibatch_update", (STATE, X, nan_at(jnp.ones(40), 11)),
     lambda s: int(s.status) == Status.NONFINITE
     and np.array_equal(s.centroids, STATE.centroids)),
]  # fmt: skip


@pytest.mark.parametrize("name,args,shows", TRACED_NAN, ids=[c for c, _, _ in TRACED_NAN])
def test_traced_nan_or_inf_shows_in_the_result(name, args, shows):
    fn, good = CASES[name]
    assert shows(jax.jit(fn)(*args))
    assert not shows(jax.jit(fn)(*good))  # the finite data of the agreement test do not
