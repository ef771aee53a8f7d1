"""pLSA by EM vs scikit-learn's KL-NMF (multiplicative updates), dense and sparse.

scikit-learn's ``NMF(beta_loss="kullback-leibler", solver="mu")`` minimises the
generalised KL divergence D(N‖WH), pLSA's negative log-likelihood up to a constant
(techniques.md §1, "pLSA and KL-NMF"); its iteration differs from EM, so it is a
peer for speed per iteration on the same objective. Both start from the same
factors (uniform mixtures, the same random topics) and run the same number of
iterations; the table also gives each fit's pLSA log-likelihood per token.
"""

from __future__ import annotations

import collections
import re
import tracemalloc
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
from jax.experimental import sparse

from benchmarks._harness import Table, ms, ratio, time_fns
from gradjax import em
from gradjax.em import _plsa


def planted_dense_counts(num_docs, vocab_size, num_topics, doc_length, seed=0):
    """Counts from pLSA's generative model (Dirichlet(0.1) topics and mixtures)."""
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(vocab_size, 0.1), num_topics)
    mixtures = rng.dirichlet(np.full(num_topics, 0.1), num_docs)
    p_w_given_d = mixtures @ topics
    p_w_given_d /= p_w_given_d.sum(axis=1, keepdims=True)
    return rng.multinomial(doc_length, p_w_given_d).astype(np.float32)


def zipf_sparse_counts(num_docs, vocab_size, num_topics, draws_per_doc, seed=0):
    """A CSR count matrix sampled token by token, never densified.

    Each topic is a Zipf(1) law over its own random permutation of the vocabulary;
    each document draws its tokens from one or two topics.
    """
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, vocab_size + 1)
    zipf /= zipf.sum()
    rank = rng.choice(vocab_size, size=(num_docs, draws_per_doc), p=zipf)
    topic_of_token = rng.integers(0, num_topics, size=(num_docs, 2))
    which = rng.integers(0, 2, size=(num_docs, draws_per_doc))
    topic = np.take_along_axis(topic_of_token, which, axis=1)
    permutations = np.stack([rng.permutation(vocab_size) for _ in range(num_topics)])
    words = permutations[topic, rank]
    docs = np.repeat(np.arange(num_docs), draws_per_doc)
    matrix = scipy.sparse.csr_matrix(
        (np.ones(docs.size, np.float32), (docs, words.ravel())), shape=(num_docs, vocab_size)
    )
    matrix.sum_duplicates()
    return matrix


def starting_factors(counts_total, num_docs, vocab_size, num_topics, seed=1):
    """Uniform mixtures and random topics, as pLSA factors and as NMF's W, H."""
    rng = np.random.default_rng(seed)
    phi = rng.exponential(size=(num_topics, vocab_size)).astype(np.float32)
    phi /= phi.sum(axis=1, keepdims=True)
    theta = np.full((num_docs, num_topics), 1.0 / num_topics, np.float32)
    # WH = diag(n_d) Θ Φ has the data's row sums, the scaling that pLSA implies.
    w0 = theta * counts_total[:, None].astype(np.float32)
    return phi, theta, w0, phi.copy()


def nmf_log_likelihood_per_token(x, w, h):
    """pLSA log-likelihood per token of NMF factors: p(w|d) = (WH)_dw / Σ_w (WH)_dw."""
    row_total = w @ h.sum(axis=1)
    if scipy.sparse.issparse(x):
        coo = x.tocoo()
        model = np.einsum("nk,nk->n", w[coo.row], h.T[coo.col]) / row_total[coo.row]
        return float(np.sum(coo.data * np.log(model)) / coo.data.sum())
    model = (w @ h) / row_total[:, None]
    mask = x > 0
    return float(np.sum(x[mask] * np.log(model[mask])) / x.sum())


def run_nmf(x, w0, h0, num_steps):
    from sklearn.decomposition import NMF

    nmf = NMF(
        w0.shape[1], beta_loss="kullback-leibler", solver="mu", init="custom",
        max_iter=num_steps, tol=0.0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter reached on purpose
        w = nmf.fit_transform(x, W=w0.copy(), H=h0.copy())
    return w, nmf.components_


def dense_profile(counts, phi, theta):
    """Times the parts of one dense EM step and counts its passes over D×W-sized data.

    Returns (the floors as (label, seconds) rows, note lines, data): the three
    whole-matrix GEMMs, and the step's GEMM FLOPs at the peak rate of a square GEMM.
    Each part is a jitted function of (Θ, Φ) on the step's own row-block layout; XLA
    drops what a part does not return (the log-likelihood, in "without").
    """
    (num_docs, vocab_size), num_topics = counts.shape, phi.shape[0]
    flops = 2 * num_docs * vocab_size * num_topics
    rng = np.random.default_rng(2)
    ratio_matrix = jnp.asarray(rng.random((num_docs, vocab_size), np.float32))
    side = 2048  # a square GEMM: XLA's peak f32 rate on this machine
    square = jnp.asarray(rng.random((side, side), np.float32))
    peak_gemm = jax.jit(lambda a: a @ a)
    gemms = {
        "ΘΦ": jax.jit(lambda t, p, r: t @ p),
        "RΦᵀ": jax.jit(lambda t, p, r: r @ p.T),
        "ΘᵀR": jax.jit(lambda t, p, r: t.T @ r),
    }

    layout = _plsa._layout(counts, by_word=True)
    num_blocks, rows, _ = layout.blocks.shape
    lengths = _plsa._doc_lengths(layout)
    start = _plsa._State(theta, phi, jnp.zeros(()), jnp.zeros(()), jnp.array(True))

    # Each part takes the blocks as an argument (a closed-over array would be a constant
    # that XLA could fold into the program).
    def blocked_gemms(blocks, lengths, t, p):  # the step's 3 GEMMs per block, R_b := N_b ⊙ M_b
        left_blocks, right = _plsa._block_factors(layout._replace(blocks=blocks), t, p)

        def block(acc, inputs):
            n_b, left_b = inputs
            ratio = n_b * _plsa._dot_rows(left_b, right)
            return acc + left_b @ ratio, right @ ratio.T

        return jax.lax.scan(block, jnp.zeros_like(right), (blocks, left_blocks))

    def sums(blocks, lengths, t, p):
        return _plsa._e_step_sums(layout._replace(blocks=blocks), t, p)

    def step(blocks, lengths, t, p):
        em_step = _plsa._em_step(layout._replace(blocks=blocks), True)
        return em_step(start._replace(theta=t, phi=p))

    parts = {
        "the 3 GEMMs per block alone": jax.jit(blocked_gemms),
        "E-step without the log-likelihood": jax.jit(lambda *a: sums(*a)[1:]),
        "E-step": jax.jit(sums),
        "whole EM step": jax.jit(step),
    }
    args = (layout.blocks, lengths, theta, phi)
    calls = {k: (lambda f=f: f(theta, phi, ratio_matrix)) for k, f in gemms.items()}
    calls.update({k: (lambda f=f: f(*args)) for k, f in parts.items()})
    calls["peak"] = lambda: peak_gemm(square)
    best = {k: timing.min for k, timing in time_fns(calls, repeats=15).items()}
    gemm_s, part_s = ({k: best[k] for k in group} for group in (gemms, parts))
    peak_flops = 2 * side**3 / best["peak"]
    floors = [
        ("floor: the 3 GEMMs alone (`jnp.dot`, whole matrices; fastest of 15)",
         sum(gemm_s.values())),
        (f"floor: the 3 GEMMs' {3 * flops / 1e9:.3g} GFLOP at the peak GEMM rate",
         3 * flops / peak_flops),
    ]  # fmt: skip
    passes = block_passes(
        parts["whole EM step"].lower(*args).compile().as_text(), layout.blocks.shape[1:]
    )
    block_mib = layout.blocks[0].size * 4 / 2**20
    notes = [
        "Floor and profile: the fastest of 15 calls of each part, the parts called in turn. "
        "Floor: the three GEMMs "
        f"of a step as plain `jnp.dot`s of the whole matrices ({flops / 1e9:.2f} GFLOP each): "
        + ", ".join(
            f"{k} {ms(v):.1f} ms ({flops / v / 1e9:.0f} GFLOP/s)" for k, v in gemm_s.items()
        )
        + f". Peak GEMM rate: {peak_flops / 1e9:.0f} GFLOP/s (`jnp.dot` of two {side}² "
        "float32 matrices, fastest of 15).",
        f"Profile of one EM step on its {num_blocks} row blocks of {rows} "
        f"{'words (of the transposed counts)' if layout.transposed else 'documents'} "
        f"({block_mib:.1f} MiB each; ms): "
        + ", ".join(f"{k} {ms(v):.1f}" for k, v in part_s.items())
        + ". Per block the optimized HLO reads or writes a block-sized array "
        f"{passes['total']} times ({passes['detail']}); all but the first read of the "
        f"counts touch a block-sized array just written or read ({block_mib:.1f} MiB).",
    ]
    data = {
        "floor_ms_gemms": {k: ms(v) for k, v in gemm_s.items()},
        "peak_gemm_gflops": peak_flops / 1e9,
        "profile_ms": {k: ms(v) for k, v in part_s.items()},
        "block_passes": passes["total"],
        "block_rows": rows,
    }
    return floors, notes, data


def block_passes(hlo: str, block: tuple[int, int]) -> dict:
    """Reads and writes of block-sized data per iteration of the while loop (or in the
    entry computation, for one block) of an optimized HLO text: an operand of shape
    ``block`` (or the stacked blocks a fusion slices one from) is one read, a result of
    shape ``block`` one write."""

    def computation(head: str) -> str:
        return re.search(r"\n" + head + r".*?\n}", hlo, re.S).group(0)

    shapes = dict(re.findall(r"%([\w.-]+) = (f32\[[\d,]*\])", hlo))
    loop = re.search(r"while\(.*?body=%([\w.-]+)", hlo)  # none if there is only one block
    body = computation(f"%{re.escape(loop.group(1))} " if loop else "ENTRY ")
    sized = re.compile(r"f32\[(\d+,)?" + f"{block[0]},{block[1]}" + r"\]")
    counts = collections.Counter()
    for line in body.splitlines():
        op = re.search(r"= (\S+) (?:fusion|dot)\(([^)]*)\)", line)
        if not op:
            continue
        called = re.search(r"calls=(%[\w.-]+)", line)
        inner = computation(re.escape(called.group(1)) + " ") if called else line
        kind = "GEMM" if " dot(" in inner else "reduction" if " reduce(" in inner else "elementwise"
        operands = re.findall(r"%([\w.-]+)", op.group(2))
        counts[f"{kind} reads"] += sum(bool(sized.fullmatch(shapes.get(o, ""))) for o in operands)
        counts[f"{kind} writes"] += bool(sized.fullmatch(op.group(1).split("{")[0]))
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)
    return {"total": sum(counts.values()), "detail": detail}


def compare(
    name, title, counts_jax, counts_peer, factors, iters, notes, extra, floors=(), repeats=3
):
    """Times both solvers at two iteration counts; per-iteration cost is the difference."""
    phi0, theta0, w0, h0 = factors
    num_topics = phi0.shape[0]
    few, many = iters
    phi0_j, theta0_j = jnp.asarray(phi0), jnp.asarray(theta0)
    fits = {
        n: jax.jit(
            lambda c, p, t, n=n: em.plsa(None, c, num_topics, num_steps=n, tol=0.0, init=(p, t))
        )
        for n in iters
    }
    calls = {("ours", n): (lambda f=f: f(counts_jax, phi0_j, theta0_j)) for n, f in fits.items()}
    calls.update({("peer", n): (lambda n=n: run_nmf(counts_peer, w0, h0, n)) for n in iters})
    timings = time_fns(calls, repeats=repeats)
    ours, peer = ({n: timings[who, n] for n in iters} for who in ("ours", "peer"))
    # Per round, the marginal cost of an iteration from the two calls timed side by side
    # (a slow spell of the shared machine then hits both), and the two solvers' ratio.
    per_round = {
        who: np.maximum(np.subtract(t[many].times, t[few].times), 1e-9) / (many - few)
        for who, t in (("ours", ours), ("peer", peer))
    }
    per_ours, per_peer = (float(np.median(v)) for v in per_round.values())
    round_ratios = per_round["peer"] / per_round["ours"]
    ratio_quartiles = np.quantile(round_ratios, [0.25, 0.5, 0.75])

    fit = fits[many](counts_jax, phi0_j, theta0_j)
    compiled = fits[many].lower(counts_jax, phi0_j, theta0_j).compile()
    temp_bytes = compiled.memory_analysis().temp_size_in_bytes
    tokens = float(counts_peer.sum())
    ll_ours = float(fit.log_likelihood) / tokens
    trace = np.asarray(fit.log_likelihood_trace, np.float64)
    monotone = bool(np.all(np.diff(trace) >= -1e-6 * np.abs(trace[1:])))
    tracemalloc.start()
    w, h = run_nmf(counts_peer, w0, h0, many)
    peer_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ll_peer = nmf_log_likelihood_per_token(counts_peer, w, h)

    rows = [
        [
            "gradjax `em.plsa` (jit)", ms(per_ours), ms(ours[many].median),
            ours[many].compile, temp_bytes / 2**20, ll_ours, ratio(per_peer, per_ours),
            ratio(peer[many].median, ours[many].median),
        ],
        [
            "scikit-learn `NMF(beta_loss='kullback-leibler', solver='mu')`", ms(per_peer),
            ms(peer[many].median), 0.0, peer_peak / 2**20, ll_peer, "1.00x", "1.00x",
        ],
    ]  # fmt: skip
    for label, floor in floors:
        rows.append([label, ms(floor), "-", "-", "-", "-", ratio(per_peer, floor), "-"])
    notes = [
        *notes,
        f"ms / iteration = (time of {many} iterations - time of {few}) / {many - few}: the "
        "marginal cost of an iteration, without either library's fixed per-call work "
        f"(gradjax: sparse layout and a final log-likelihood pass; scikit-learn: input "
        f"validation). 'fit ms' is the whole {many}-iteration call. {repeats} rounds, each "
        "calling gradjax's and scikit-learn's fits in turn from the same start (uniform "
        "mixtures, the same random topics); ms / iteration is the median over rounds of "
        "the difference of a round's two calls, and the speed-up per round has quartiles "
        + " / ".join(f"{q:.2f}x" for q in ratio_quartiles)
        + ".",
        "Peak memory: gradjax = XLA's compiled temporary buffers (memory_analysis, "
        "excluding inputs/outputs); scikit-learn = tracemalloc peak of one fit (NumPy "
        "allocations, excluding the input).",
        f"log-lik / token after {many} iterations of each (NMF factors normalised to "
        f"p(w|d)); gradjax's trace is monotone: {monotone}. The MU iteration differs from "
        "EM (techniques.md §1), so the two paths differ.",
    ]
    data = {
        "ms_per_iter_gradjax": ms(per_ours),
        "ms_per_iter_sklearn": ms(per_peer),
        "speedup_per_iter": per_peer / per_ours,
        "speedup_per_iter_round_quartiles": ratio_quartiles.tolist(),
        "ms_fit_gradjax": ms(ours[many].median),
        "ms_fit_sklearn": ms(peer[many].median),
        "temp_mib_gradjax": temp_bytes / 2**20,
        "peak_mib_sklearn": peer_peak / 2**20,
        "ll_per_token_gradjax": ll_ours,
        "ll_per_token_sklearn": ll_peer,
        "monotone": monotone,
        **extra,
    }
    columns = [
        "solver", "ms / iteration", "fit ms", "compile s", "peak temp MiB", "log-lik / token",
        "speed-up / iteration", f"speed-up, {many}-iteration fit",
    ]  # fmt: skip
    return Table(name, title, columns, rows, notes, data)


def plsa_dense(quick: bool) -> Table:
    num_docs, vocab_size, num_topics = (400, 1000, 20) if quick else (2000, 5000, 50)
    iters = (2, 6) if quick else (2, 12)
    x = planted_dense_counts(num_docs, vocab_size, num_topics, doc_length=500)
    phi0, theta0, w0, h0 = starting_factors(x.sum(axis=1), num_docs, vocab_size, num_topics)
    counts = jnp.asarray(x)
    floors, profile_notes, profile = dense_profile(counts, jnp.asarray(phi0), jnp.asarray(theta0))
    return compare(
        "plsa_dense",
        f"pLSA EM, dense counts D={num_docs}, W={vocab_size}, K={num_topics}, float32",
        counts,
        x,
        (phi0, theta0, w0, h0),
        iters,
        [
            "Target >= 3x. Counts: 500 tokens per document from a planted pLSA model "
            f"({(x > 0).mean():.1%} non-zero). gradjax: 3 GEMMs per EM step "
            "(ΘΦ, RΦᵀ, ΘᵀR with R = N/(ΘΦ)) on cache-sized row blocks; NMF's MU: 4 GEMMs "
            "(WH twice).",
            *profile_notes,
        ],
        {"shape": [num_docs, vocab_size, num_topics], **profile},
        floors=floors,
        repeats=11,
    )


def plsa_sparse(quick: bool) -> Table:
    if quick:
        num_docs, vocab_size, num_topics, draws = 2000, 5000, 20, 100
    else:
        num_docs, vocab_size, num_topics, draws = 20_000, 50_000, 50, 128
    iters = (1, 4) if quick else (1, 6)
    csr = zipf_sparse_counts(num_docs, vocab_size, num_topics, draws)
    coo = csr.tocoo()
    indices = np.stack([coo.row, coo.col], axis=1).astype(np.int32)
    bcoo = sparse.BCOO(
        (jnp.asarray(coo.data), jnp.asarray(indices)),
        shape=csr.shape,
        indices_sorted=True,
        unique_indices=True,
    )
    totals = np.asarray(csr.sum(axis=1)).ravel()
    phi0, theta0, w0, h0 = starting_factors(totals, num_docs, vocab_size, num_topics)
    dense_mib = num_docs * vocab_size * 4 / 2**20
    return compare(
        "plsa_sparse",
        f"pLSA EM, sparse counts D={num_docs:,}, W={vocab_size:,}, nnz={csr.nnz:,}, "
        f"K={num_topics}, float32",
        bcoo,
        csr,
        (phi0, theta0, w0, h0),
        iters,
        [
            "Target >= 3x, memory O(nnz·K). gradjax takes a `jax.experimental.sparse.BCOO`; "
            "scikit-learn the CSR matrix. Counts: "
            f"{draws} Zipf(1) tokens per document from one or two of {num_topics} topics, "
            "sampled token by token (no dense array).",
            f"A dense D×W float32 array would take {dense_mib:,.0f} MiB; nnz·K float32 is "
            f"{csr.nnz * num_topics * 4 / 2**20:,.0f} MiB.",
        ],
        {"shape": [num_docs, vocab_size, num_topics], "nnz": int(csr.nnz)},
    )


BENCHMARKS = {"plsa_dense": plsa_dense, "plsa_sparse": plsa_sparse}
