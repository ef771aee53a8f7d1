"""Probabilistic latent semantic analysis (pLSA) fitted by Hofmann's EM.

The model explains a document-word count matrix ``n(d, w)`` by ``K`` topics,

    p(w | d) = Σ_z p(z | d) p(w | z),

and EM maximises the log-likelihood ``L = Σ_{d,w} n(d,w) log Σ_z p(z|d) p(w|z)``.
Each step minimises a majorising surrogate of ``-L`` built at the current point
from the posteriors ``C(z | d, w) = p(z|d) p(w|z) / Σ_z' p(z'|d) p(w|z')`` (the
E-step), and both factors are re-estimated from the same posteriors (the M-step):

    p(w | z) ∝ Σ_d n(d,w) C(z|d,w),        p(z | d) = Σ_w n(d,w) C(z|d,w) / n(d).

Neither step ever materialises the ``D×W×K`` posterior. With ``Θ = p(z|d)``
(D, K), ``Φ = p(w|z)`` (K, W) and the ratio ``R = n / (ΘΦ)`` (zero where n = 0),
the expected counts are ``Θ ⊙ (R Φᵀ)`` and ``Φ ⊙ (Θᵀ R)``: three GEMMs per step on
a dense ``counts``, a cache-sized block of documents (of words, when W > D) at a
time. For a ``jax.experimental.sparse.BCOO`` ``counts`` the same quantities are
computed per non-zero by gathers and segment sums, a chunk of non-zeros at a time,
grouped by document and by word (``_plsa_sparse``): working memory O(nnz + chunk·K + (D + W)·K)
besides the input, never a D×W array.

The update is the classical multiplicative form, so a probability that is zero
stays zero; the default start is strictly positive.

References:
  T. Hofmann, "Probabilistic latent semantic indexing", SIGIR 1999; "Unsupervised
  learning by probabilistic latent semantic analysis", Machine Learning 42 (2001).
  Su Jianlin, "Gradient descent and EM: one idea" (kexue.fm/archives/4277).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.experimental import sparse

from gradjax._checks import (
    all_finite,
    check_finite_tree,
    check_int,
    check_key,
    check_scalar,
    concrete_any,
    real_array,
)
from gradjax._loop import scan_loop
from gradjax._status import Status

from . import _plsa_sparse
from ._blocks import block_size_for, from_blocks, to_blocks
from ._outcome import status_code
from ._plsa_sparse import EStepSums

Counts = Any  # a dense (D, W) array or a BCOO matrix


class PLSAResult(NamedTuple):
    """What :func:`plsa` returns.

    Attributes:
      p_w_given_z: (K, W) topics, each row on the simplex.
      p_z_given_d: (D, K) document mixtures, each row on the simplex.
      log_likelihood: ``Σ n(d,w) log Σ_z p(z|d) p(w|z)`` of the returned factors.
      log_likelihood_trace: (num_steps,) log-likelihood after each EM step
        (constant at ``log_likelihood`` once converged); never decreases in exact
        arithmetic.
      num_steps: int32, the number of EM steps taken.
      converged: bool, ``status == Status.SUCCESS``.
      status: int32 :class:`gradjax.Status` code: ``SUCCESS`` once the relative
        gain of a step fell to ``tol``, ``MAX_STEPS`` if it never did (always
        with ``tol=0``), ``NONFINITE`` if the log-likelihood of the returned
        factors is NaN or ``-inf`` (a traced NaN or negative count, or a warm
        start that gives an observed word probability zero) or a step would have
        made the factors NaN/Inf (that step is not taken: the last finite
        factors are returned).
    """

    p_w_given_z: jax.Array
    p_z_given_d: jax.Array
    log_likelihood: jax.Array
    log_likelihood_trace: jax.Array
    num_steps: jax.Array
    converged: jax.Array
    status: jax.Array


class PLSAFoldInResult(NamedTuple):
    """What :func:`plsa_fold_in` returns.

    Attributes:
      p_z_given_d: (D, K) mixtures of the new documents, rows on the simplex.
      log_likelihood: ``Σ n(d,w) log Σ_z p(z|d) p(w|z)`` of the returned mixtures
        under the fixed topics.
      log_likelihood_trace: (num_steps,) log-likelihood after each EM step.
      num_steps: int32, the number of EM steps taken.
      converged: bool, ``status == Status.SUCCESS``.
      status: int32 :class:`gradjax.Status` code, as in :class:`PLSAResult`.
    """

    p_z_given_d: jax.Array
    log_likelihood: jax.Array
    log_likelihood_trace: jax.Array
    num_steps: jax.Array
    converged: jax.Array
    status: jax.Array


# ----------------------------------------------------------------------------- checks


def _concrete_any_negative(x: jax.Array) -> bool:
    return concrete_any(x, lambda v: v < 0)


def _concrete_min(x: jax.Array) -> float:
    with jax.ensure_compile_time_eval():
        return float(jnp.min(x))


def _float_dtype(dtype: Any) -> Any:
    if jnp.issubdtype(dtype, jnp.floating):
        return dtype
    return jnp.zeros((), float).dtype  # float32, or float64 under enable_x64


def _as_counts(counts: Any) -> Counts:
    """Checks ``counts`` (dense or BCOO, 2-D, non-negative) and casts it to float."""
    if isinstance(counts, sparse.BCOO):
        if counts.ndim != 2 or counts.n_batch != 0 or counts.n_dense != 0:
            raise ValueError(
                "counts must be a 2-D (documents, words) BCOO matrix with no batch or dense "
                f"dimensions, got shape {counts.shape} (n_batch={counts.n_batch}, "
                f"n_dense={counts.n_dense})"
            )
        data = counts.data
    else:
        if type(counts).__module__.startswith(("scipy.sparse", "jax.experimental.sparse")):
            raise TypeError(
                f"counts must be a dense array or a jax.experimental.sparse.BCOO, got the "
                f"sparse {type(counts).__name__}: convert it with BCOO.from_scipy_sparse"
            )
        counts = real_array("counts", counts)  # bools are not counts
        if counts.ndim != 2:
            raise ValueError(
                f"counts must be a 2-D (documents, words) array, got shape {counts.shape}"
            )
        data = counts
    if 0 in counts.shape:
        raise ValueError(f"counts must have at least one document and one word, got {counts.shape}")
    if not (jnp.issubdtype(data.dtype, jnp.floating) or jnp.issubdtype(data.dtype, jnp.integer)):
        raise TypeError(f"counts must be a real (int or floating) array, got dtype {data.dtype}")
    check_finite_tree("counts", data)
    if _concrete_any_negative(data):
        raise ValueError(f"counts must be non-negative, got a minimum of {_concrete_min(data)}")
    dtype = _float_dtype(data.dtype)
    if isinstance(counts, sparse.BCOO):
        return sparse.BCOO(
            (data.astype(dtype), counts.indices),
            shape=counts.shape,
            indices_sorted=counts.indices_sorted,
            unique_indices=counts.unique_indices,
        )
    return counts.astype(dtype)


def _nan_if_negative(counts: Counts) -> Counts:
    """Traced counts cannot be checked: a negative one becomes NaN, so the result shows it
    (``NONFINITE``, a NaN log-likelihood) instead of a finite-looking answer."""
    if isinstance(counts, sparse.BCOO):
        data = jnp.where(counts.data < 0, jnp.nan, counts.data)
        return sparse.BCOO(
            (data, counts.indices),
            shape=counts.shape,
            indices_sorted=counts.indices_sorted,
            unique_indices=counts.unique_indices,
        )
    return jnp.where(counts < 0, jnp.nan, counts)


def _as_distribution(name: str, value: Any, shape: tuple[int, int], dtype: Any) -> jax.Array:
    """A user-given factor: checks dtype, shape and sign, then normalises its rows."""
    value = real_array(name, value)
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
    check_finite_tree(name, value)
    if _concrete_any_negative(value):
        raise ValueError(f"{name} must be non-negative, got a minimum of {_concrete_min(value)}")
    if concrete_any(value, lambda v: jnp.sum(v, axis=1) <= 0):
        raise ValueError(f"{name} must have rows with a positive sum, got an all-zero row")
    value = value.astype(dtype)
    return value / jnp.sum(value, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- E-step sums
# Both layouts compute, for the current (Θ, Φ), the log-likelihood and the two sums of
# the ratio R = n / (ΘΦ) (zero where n = 0, so 0/0 never happens) that the M-step needs:
# RΦᵀ (D, K) and ΘᵀR (K, W). Θ ⊙ RΦᵀ and Φ ⊙ ΘᵀR are the expected counts.

# A dense block of about this many entries (4 MiB of float32) stays in the last-level
# cache from the GEMM that writes its model to the two GEMMs that read its ratios, where
# whole-matrix GEMMs stream D×W intermediates through memory: an EM step at D=2000,
# W=5000, K=50 went from 47 ms to 37 ms on a 2-core CPU with 2¹⁹-entry blocks, and 2²⁰
# entries took 44 instead of 48 CPU-ms (blocks of 104 to 504 documents, timed
# interleaved; benchmarks/plsa.py's plsa_dense has the profile).
_DENSE_BLOCK_ENTRIES = 1 << 20


class _DenseBlocks(NamedTuple):
    """Dense counts as row blocks (``_blocks.to_blocks``: interleaved, zero-padded).

    The blocks run along the longer axis, so each holds the whole shorter one: the
    rows are documents, or words when ``transposed`` (blocks of the counts' transpose).
    The squarer blocks ran the three GEMMs faster: at D=2000, W=5000, K=50, blocks of
    about 500 words × 2000 documents took 21.0 ms an E-step against 22.4 for blocks of
    200 documents × 5000 words (medians of 25 interleaved calls).
    """

    blocks: jax.Array  # (num_blocks, rows, columns)
    num_rows: int
    transposed: bool


Layout = Any  # _DenseBlocks or _plsa_sparse.Segments


def _values(counts: Counts) -> jax.Array:
    return counts.data if isinstance(counts, sparse.BCOO) else counts


def _layout(counts: Counts, *, by_word: bool) -> Layout:
    if isinstance(counts, sparse.BCOO):
        return _plsa_sparse.segment(counts, by_word=by_word)
    transposed = counts.shape[1] > counts.shape[0]
    counts = counts.T if transposed else counts
    num_rows, num_columns = counts.shape
    rows = block_size_for(num_rows, 0, max(8, _DENSE_BLOCK_ENTRIES // num_columns))
    return _DenseBlocks(to_blocks(counts, rows), num_rows, transposed)


def _block_factors(counts: _DenseBlocks, theta: jax.Array, phi: jax.Array):
    """The factors in the layout's orientation: the row factor's blocks as
    (num_blocks, K, rows) and the column factor (K, columns); ``(Θ, Φ)`` for rows of
    documents, ``(Φᵀ, Θᵀ)`` for rows of words."""
    left, right = (phi.T, theta.T) if counts.transposed else (theta, phi)
    return jnp.swapaxes(to_blocks(left, counts.blocks.shape[1]), 1, 2), right


def _dot_rows(a: jax.Array, b: jax.Array) -> jax.Array:
    """``aᵀb`` for ``a`` (K, m), ``b`` (K, n), contracting the leading axis in place."""
    return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())))


def _block_sums(counts, left, right, *, row_side: bool, column_side: bool):
    """One block's E-step sums, three GEMMs: ``Σ n log M``, ``R rightᵀ`` as (K, rows),
    ``leftᵀ R`` (K, columns), where ``M = leftᵀ right`` and ``R = n / M`` (zero where
    n = 0). ``left`` is the block's rows of the left factor as (K, rows): stored that
    way, with the outputs as (K, ·), the GEMMs ran 10% faster than in (rows, K) form."""
    model = _dot_rows(left, right)
    zero = counts == 0  # contributes nothing; a NaN count propagates
    safe = jnp.where(zero, 1, model)
    log_lik = jnp.sum(jnp.where(zero, 0, counts * jnp.log(safe)))
    # a word the model gives probability 0 (no topic emits it): -inf above, and no
    # information on the factors, so no ratio (n/0 would make the sums NaN)
    ratio = jnp.where(zero | (model == 0), 0, counts / safe)
    row_sums = right @ ratio.T if row_side else None
    column_sums = left @ ratio if column_side else None
    return log_lik, row_sums, column_sums


def _e_step_sums(
    counts: Layout, theta, phi, *, doc_side: bool = True, word_side: bool = True
) -> EStepSums:
    """``(Σ n log(ΘΦ), RΦᵀ or None, ΘᵀR or None)``: GEMMs per row block, or gathers."""
    if isinstance(counts, _plsa_sparse.Segments):
        return _plsa_sparse.e_step_sums(counts, theta, phi, doc_side=doc_side, word_side=word_side)
    # Rows are documents (Nᵀ's sums are the transposes: with rows of words the left
    # factor is Φᵀ, the right Θᵀ, and R rightᵀ = (ΘᵀR)ᵀ, leftᵀR = (RΦᵀ)ᵀ).
    left_blocks, right = _block_factors(counts, theta, phi)
    row_side, column_side = (word_side, doc_side) if counts.transposed else (doc_side, word_side)

    def block(acc, inputs):
        log_lik, column_sums = acc
        ll, row_sums, sums = _block_sums(*inputs, right, row_side=row_side, column_side=column_side)
        column_sums = column_sums + sums if column_side else None
        return (log_lik + ll, column_sums), row_sums

    column_zeros = jnp.zeros(right.shape, theta.dtype) if column_side else None
    zeros = (jnp.zeros((), theta.dtype), column_zeros)
    (log_lik, column_sums), row_sums = jax.lax.scan(block, zeros, (counts.blocks, left_blocks))
    if row_side:
        row_sums = from_blocks(jnp.swapaxes(row_sums, 1, 2), counts.num_rows)  # (rows, K)
    if counts.transposed:
        return EStepSums(
            log_lik, column_sums.T if doc_side else None, row_sums.T if word_side else None
        )
    return EStepSums(log_lik, row_sums, column_sums)


def _doc_lengths(counts: Layout) -> jax.Array:
    if isinstance(counts, _plsa_sparse.Segments):
        return _plsa_sparse.doc_lengths(counts)
    if counts.transposed:
        return jnp.sum(counts.blocks, axis=(0, 1))
    return from_blocks(jnp.sum(counts.blocks, axis=2), counts.num_rows)


def _normalise_mixtures(expected: jax.Array) -> jax.Array:
    """``p(z|d) = expected / Σ_z expected`` (``= / n(d)`` when every word of ``d`` has a
    positive model probability; words that no topic emits are left out); an empty
    document gets the uniform mixture."""
    total = jnp.sum(expected, axis=1, keepdims=True)
    empty = total <= 0  # False for NaN: a NaN count gives NaN mixtures
    uniform = jnp.full_like(expected, 1.0 / expected.shape[1])
    return jnp.where(empty, uniform, expected / jnp.where(empty, 1, total))


def _normalise_topics(expected: jax.Array, previous: jax.Array) -> jax.Array:
    """``p(w|z) ∝ expected``; a topic no document uses keeps its previous words."""
    total = jnp.sum(expected, axis=1, keepdims=True)
    unused = total <= 0  # False for NaN, which propagates
    return jnp.where(unused, previous, expected / jnp.where(unused, 1, total))


class _State(NamedTuple):
    theta: jax.Array  # p(z|d), (D, K)
    phi: jax.Array  # p(w|z), (K, W)
    log_likelihood: jax.Array  # of the factors *before* the last step
    previous: jax.Array  # the one before that
    finite: jax.Array  # false once a step was refused for NaN/Inf factors


def _em_step(counts: Layout, fit_topics: bool):
    """Hofmann's EM step (``fit_topics=False``: fold-in, topics fixed). A step whose
    factors would be NaN/Inf is refused: the state stays, flagged not finite."""

    def step(state: _State) -> _State:
        theta, phi = state.theta, state.phi
        sums = _e_step_sums(counts, theta, phi, word_side=fit_topics)
        new_theta = _normalise_mixtures(theta * sums.doc_sums)
        ok = jnp.all(jnp.isfinite(new_theta))
        if fit_topics:
            phi = _normalise_topics(phi * sums.word_sums, phi)
            ok = ok & jnp.all(jnp.isfinite(phi))
        stepped = _State(new_theta, phi, sums.log_likelihood, state.log_likelihood, state.finite)
        return optax.tree.where(ok, stepped, state._replace(finite=False))

    return step


class EMRun(NamedTuple):
    """What :func:`_run_em` returns."""

    theta: jax.Array  # p(z|d), (D, K)
    phi: jax.Array  # p(w|z), (K, W)
    log_likelihood: jax.Array  # of the returned factors
    trace: jax.Array  # (num_steps,), the log-likelihood after each step
    num_steps: jax.Array  # int32, steps taken
    converged: jax.Array  # bool, status == SUCCESS
    status: jax.Array  # int32 Status code


@functools.partial(jax.jit, static_argnames=("num_steps", "fit_topics"))
def _run_em(counts, theta, phi, tol, *, num_steps, fit_topics) -> EMRun:
    """Runs EM from ``(theta, phi)``: the final factors, their log-likelihood, the trace
    and how the loop ended.

    Jitted once per shape (the public functions validate first, then call this), so
    repeated eager calls do not re-trace the scan.
    """
    counts = _layout(_nan_if_negative(counts), by_word=fit_topics)
    minus_inf = jnp.full((), -jnp.inf, theta.dtype)
    start_finite = all_finite(theta, phi)
    state = _State(theta, phi, minus_inf, minus_inf, start_finite)

    def small_gain(s: _State) -> jax.Array:
        gain = s.log_likelihood - s.previous
        small = jnp.isfinite(s.previous) & (gain <= tol * jnp.abs(s.log_likelihood))
        return small & (tol > 0)

    out = scan_loop(
        _em_step(counts, fit_topics),
        state,
        num_steps=num_steps,
        converged=lambda s: small_gain(s) | ~s.finite,
        record=lambda s: s.log_likelihood,
    )
    theta, phi = out.state.theta, out.state.phi
    final = _e_step_sums(counts, theta, phi, doc_side=False, word_side=False).log_likelihood
    refused = (start_finite & ~out.state.finite).astype(jnp.int32)  # counted, not taken
    steps = out.num_steps - refused
    # out.trace[k] is the log-likelihood of the factors after k steps (it lags by one
    # step because the E-step computes it for free); shift it to "after k + 1 steps".
    after = jnp.concatenate([out.trace[1:], final[None]])
    index = jnp.arange(num_steps)
    trace = jnp.where(index + 1 < steps, after, final)
    finite = out.state.finite & jnp.isfinite(final)
    status = status_code(small_gain(out.state), finite)
    return EMRun(theta, phi, final, trace, steps, status == int(Status.SUCCESS), status)


# ----------------------------------------------------------------------------- public


def plsa(
    key: jax.Array,
    counts: Counts,
    num_topics: int,
    *,
    num_steps: int = 100,
    tol: float = 1e-6,
    init: tuple[jax.Array, jax.Array] | None = None,
) -> PLSAResult:
    r"""Fits pLSA topics and document mixtures to a count matrix by Hofmann's EM.

    Maximises ``L = Σ_{d,w} n(d,w) log Σ_z p(z|d) p(w|z)`` over row-stochastic
    ``p(w|z)`` (K, W) and ``p(z|d)`` (D, K). Each step computes the posteriors
    ``C(z|d,w) ∝ p(z|d) p(w|z)`` once and re-estimates both factors from them,

        p(w|z) ∝ Σ_d n(d,w) C(z|d,w),    p(z|d) = Σ_w n(d,w) C(z|d,w) / n(d),

    which minimises a majorising surrogate of ``-L`` that touches it at the current
    point, so ``L`` never decreases. Dense ``counts`` use three GEMMs per step on
    cache-sized row blocks (O(D·W) memory); a ``BCOO`` ``counts`` uses gathers and
    segment sums over its non-zeros in fixed-size chunks (O(nnz + (D + W)·K) working
    memory besides the input, never a D×W or nnz×K array) and gives the same result.

    Empty documents (all counts zero) do not affect the topics and get the uniform
    mixture ``1/K``. Runs unchanged under ``jax.jit`` on ``counts`` sharded over
    documents (the word-side sums become a cross-device reduction).

    Args:
      key: PRNG key for the starting topics (unused, and may be None, when ``init``
        is given).
      counts: (D, W) non-negative counts, a dense array or a 2-D
        ``jax.experimental.sparse.BCOO`` (duplicate entries are summed).
      num_topics: the number of topics ``K``, ``1 <= K <= W``.
      num_steps: the maximum number of EM steps (a static ``int``).
      tol: stop once the relative log-likelihood gain of a step is ``<= tol``;
        ``0`` runs all ``num_steps`` steps.
      init: optional warm start ``(p_w_given_z, p_z_given_d)`` of shapes (K, W) and
        (D, K); rows are normalised. Zero entries stay zero. The default start is
        random Dirichlet(1) topics (drawn in float32 whatever the counts' dtype,
        so one key gives the same start for float32 and float64 counts) and
        uniform mixtures.

    Returns:
      A :class:`PLSAResult`. ``status`` is ``NONFINITE`` (and ``log_likelihood``
      NaN or ``-inf``) if the fit broke down numerically or a traced count is NaN or negative
      (concrete NaN or Inf counts are a ValueError).

    Example:
      >>> import jax
      >>> from gradjax import em
      >>> from gradjax.datasets import plsa_corpus
      >>> corpus = plsa_corpus(jax.random.key(0), 200, 500, 5)
      >>> fit = em.plsa(jax.random.key(1), corpus.counts, 5, num_steps=200)
      >>> fit.p_w_given_z.shape, fit.p_z_given_d.shape
      ((5, 500), (200, 5))

    References:
      T. Hofmann, "Unsupervised learning by probabilistic latent semantic
      analysis", Machine Learning 42 (2001).
    """
    if init is None or key is not None:
        key = check_key("key", key)
    counts = _as_counts(counts)
    num_docs, vocab_size = counts.shape
    num_topics = check_int("num_topics", num_topics, 1)
    if num_topics > vocab_size:
        raise ValueError(
            f"num_topics must be <= the vocabulary size {vocab_size}, got {num_topics}"
        )
    num_steps = check_int("num_steps", num_steps, 0)
    tol = check_scalar("tol", tol, 0.0)
    dtype = _values(counts).dtype
    if init is None:
        phi = jax.random.exponential(key, (num_topics, vocab_size), jnp.float32).astype(dtype)
        phi = phi / jnp.sum(phi, axis=1, keepdims=True)
        theta = jnp.full((num_docs, num_topics), 1.0 / num_topics, dtype)
    else:
        if not (isinstance(init, (tuple, list)) and len(init) == 2):
            raise TypeError("init must be a pair (p_w_given_z, p_z_given_d) or None")
        phi = _as_distribution("init[0] (p_w_given_z)", init[0], (num_topics, vocab_size), dtype)
        theta = _as_distribution("init[1] (p_z_given_d)", init[1], (num_docs, num_topics), dtype)
    run = _run_em(counts, theta, phi, tol, num_steps=num_steps, fit_topics=True)
    return PLSAResult(
        p_w_given_z=run.phi,
        p_z_given_d=run.theta,
        log_likelihood=run.log_likelihood,
        log_likelihood_trace=run.trace,
        num_steps=run.num_steps,
        converged=run.converged,
        status=run.status,
    )


def plsa_fold_in(
    key: jax.Array,
    counts: Counts,
    p_w_given_z: jax.Array,
    *,
    num_steps: int = 50,
    tol: float = 1e-6,
) -> PLSAFoldInResult:
    r"""Mixtures ``p(z|d)`` of new documents under fixed topics (pLSA folding-in).

    Runs the EM step of :func:`plsa` on ``p(z|d)`` only, ``p(w|z)`` held fixed::

        p(z|d) ← p(z|d) Σ_w n(d,w) p(w|z) / (Σ_z' p(z'|d) p(w|z')) / n(d).

    With topics fixed the log-likelihood is concave in each document's mixture, so
    EM climbs to its maximum (unique when the topics restricted to the document's
    words are linearly independent) from any interior start. A word that no topic
    emits (``p(w|z) = 0`` for every ``z``, e.g. one absent from the fitted corpus)
    says nothing about the mixture and is left out of the update, but it makes the
    log-likelihood ``-inf`` and the status ``NONFINITE``: smooth the topics (add a
    small constant) to score such documents.

    Args:
      key: PRNG key for the random interior starting mixtures.
      counts: (D, W) non-negative counts of the new documents (dense or BCOO).
      p_w_given_z: (K, W) fixed topics (rows are normalised).
      num_steps: the maximum number of EM steps (a static ``int``).
      tol: stop once the relative log-likelihood gain of a step is ``<= tol``
        (``0`` runs all ``num_steps``).

    Returns:
      A :class:`PLSAFoldInResult`: ``p_z_given_d`` (D, K), rows on the simplex
      (empty documents get ``1/K``), its log-likelihood, the trace and the
      ``status`` as in :func:`plsa`.

    Example:
      >>> import jax
      >>> from gradjax import em
      >>> from gradjax.datasets import plsa_corpus
      >>> corpus = plsa_corpus(jax.random.key(0), 60, 100, 3)
      >>> fit = em.plsa(jax.random.key(1), corpus.counts[:50], 3, num_steps=50)
      >>> import gradjax as gj
      >>> new = em.plsa_fold_in(jax.random.key(2), corpus.counts[50:], fit.p_w_given_z)
      >>> gj.Status(int(new.status)).name, float(new.log_likelihood)  # unseen words
      ('NONFINITE', -inf)
      >>> topics = fit.p_w_given_z + 1e-6  # smoothed: every word has a probability
      >>> new = em.plsa_fold_in(jax.random.key(2), corpus.counts[50:], topics)
      >>> new.p_z_given_d.shape, gj.Status(int(new.status)).name
      ((10, 3), 'SUCCESS')

    References:
      T. Hofmann, "Probabilistic latent semantic indexing", SIGIR 1999 (folding-in).
    """
    key = check_key("key", key)
    counts = _as_counts(counts)
    num_docs, vocab_size = counts.shape
    p_w_given_z = real_array("p_w_given_z", p_w_given_z)
    if p_w_given_z.ndim != 2 or p_w_given_z.shape[1] != vocab_size or p_w_given_z.shape[0] < 1:
        raise ValueError(
            f"p_w_given_z must have shape (num_topics, {vocab_size}), got {p_w_given_z.shape}"
        )
    num_steps = check_int("num_steps", num_steps, 0)
    tol = check_scalar("tol", tol, 0.0)
    dtype = _values(counts).dtype
    num_topics = p_w_given_z.shape[0]
    phi = _as_distribution("p_w_given_z", p_w_given_z, (num_topics, vocab_size), dtype)
    theta = jax.random.exponential(key, (num_docs, num_topics), jnp.float32).astype(dtype) + 1e-3
    theta = theta / jnp.sum(theta, axis=1, keepdims=True)
    run = _run_em(counts, theta, phi, tol, num_steps=num_steps, fit_topics=False)
    return PLSAFoldInResult(
        p_z_given_d=run.theta,
        log_likelihood=run.log_likelihood,
        log_likelihood_trace=run.trace,
        num_steps=run.num_steps,
        converged=run.converged,
        status=run.status,
    )


def plsa_log_likelihood(
    counts: Counts, p_w_given_z: jax.Array, p_z_given_d: jax.Array
) -> jax.Array:
    r"""The pLSA log-likelihood ``Σ_{d,w} n(d,w) log Σ_z p(z|d) p(w|z)``.

    Zero counts contribute nothing (even where the model gives probability zero);
    a positive count with model probability zero gives ``-inf``. The factors are
    used as given (not normalised); negative or non-finite concrete entries are a
    ValueError.

    Args:
      counts: (D, W) non-negative counts (dense or BCOO; no D×W array is built
        for a BCOO).
      p_w_given_z: (K, W) topics.
      p_z_given_d: (D, K) document mixtures (the order of :class:`PLSAResult`).

    Returns:
      A scalar of the counts' floating dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradjax import em
      >>> counts = jnp.array([[2.0, 0.0], [1.0, 1.0]])
      >>> uniform = jnp.full((1, 2), 0.5), jnp.full((2, 1), 1.0)  # p(w|z), p(z|d)
      >>> round(float(em.plsa_log_likelihood(counts, *uniform)), 4)  # 4 log(1/2)
      -2.7726
    """
    counts = _as_counts(counts)
    num_docs, vocab_size = counts.shape
    p_w_given_z = real_array("p_w_given_z", p_w_given_z)
    p_z_given_d = real_array("p_z_given_d", p_z_given_d)
    if p_w_given_z.ndim != 2 or p_w_given_z.shape[1] != vocab_size or p_w_given_z.shape[0] < 1:
        raise ValueError(
            f"p_w_given_z must have shape (num_topics, {vocab_size}), got {p_w_given_z.shape}"
        )
    if p_z_given_d.shape != (num_docs, p_w_given_z.shape[0]):
        raise ValueError(
            f"p_z_given_d must have shape ({num_docs}, {p_w_given_z.shape[0]}), "
            f"got {p_z_given_d.shape}"
        )
    for name, value in (("p_w_given_z", p_w_given_z), ("p_z_given_d", p_z_given_d)):
        check_finite_tree(name, value)
        if _concrete_any_negative(value):
            raise ValueError(
                f"{name} must be non-negative, got a minimum of {_concrete_min(value)}"
            )
    dtype = _values(counts).dtype
    return _log_likelihood(counts, p_z_given_d.astype(dtype), p_w_given_z.astype(dtype))


@jax.jit
def _log_likelihood(counts: Counts, theta: jax.Array, phi: jax.Array) -> jax.Array:
    layout = _layout(_nan_if_negative(counts), by_word=False)
    return _e_step_sums(layout, theta, phi, doc_side=False, word_side=False).log_likelihood
