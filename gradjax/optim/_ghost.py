r"""Ghost norms: per-example gradient norms of flax layers without per-example gradients.

A layer y = f(a; W) whose weight gradient for one example is a sum over positions t of
outer products, ∂ℓ/∂W = Σₜ uₜ ⊗ vₜ, has

.. math:: \Big\|\sum_t u_t \otimes v_t\Big\|^2 = \sum_{t,s} (u_t\cdot u_s)(v_t\cdot v_s)
          = \langle U U^\top, V V^\top\rangle ,

the (T×T) Gram form of Li et al. (2021), or ‖UᵀV‖² when p·q < T². For ``Dense`` and
``DenseGeneral`` u = the input a, v = the output gradient δ; a bias has u = 1; ``Embed``
has one-hot rows u (U Uᵀ is the mask [idₜ = idₛ]); ``Conv`` has u = the input patch under
the kernel at output position t. Output gradients δ come from zero "probes" added to
each layer's output; inputs are captured by ``flax.linen.intercept_methods``. flax is
imported here only, when ``method="ghost"`` is used.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.linear import canonicalize_padding

from gradjax.optim._clipping import _norm, _wide
from gradjax.optim._per_example import ChunkResult, weighted_sum

SUPPORTED = (nn.Dense, nn.DenseGeneral, nn.Embed, nn.Conv)


class Call(NamedTuple):
    """One call of a supported layer, in trace order: its module (for the configuration),
    the parameter leaves it uses by role ("kernel", "bias", "embedding" -> leaf index),
    its output's shape and dtype (the probe's), and why it has no ghost rule (or None)."""

    module: Any
    roles: dict
    out_shape: tuple
    out_dtype: Any
    unsupported: str | None


class Plan(NamedTuple):
    """The calls of one example's forward pass and the leaves left to ``vmap``."""

    calls: list
    fallback: tuple


def _unsupported_config(module) -> str | None:
    if isinstance(module, nn.DenseGeneral) and tuple(module.batch_dims):
        return "DenseGeneral with batch_dims"
    if isinstance(module, nn.Conv):
        if module.feature_group_count != 1:
            return "Conv with feature_group_count > 1"
        if module.mask is not None:
            return "Conv with a kernel mask"
        padding = module.padding
        if isinstance(padding, str) and padding.upper() in ("CIRCULAR", "CAUSAL"):
            return f"Conv with padding={padding!r}"
    return None


def _own_params(module, index_of: dict) -> dict:
    if module.scope is None:
        return {}
    variables = module.variables.get("params", {})
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): index_of[id(leaf)]
        for path, leaf in jax.tree_util.tree_leaves_with_path(variables)
        if id(leaf) in index_of
    }


def plan(loss, params, example, args, kwargs, other_layers: str) -> Plan:
    """Traces one example (shapes only) to find the layer calls and check every parameter
    is covered by a ghost rule, else raises (``other_layers="error"``) or leaves it to vmap."""
    calls: list[Call] = []
    owners: dict[
        int, tuple
    ] = {}  # leaf -> (depth, class name, module path) of its innermost module
    refused: dict[int, str] = {}

    def record(params, example):
        leaves = jax.tree.leaves(params)
        index_of = {id(leaf): i for i, leaf in enumerate(leaves)}

        def interceptor(next_fun, call_args, call_kwargs, context):
            module = context.module
            own = _own_params(module, index_of)
            for i in own.values():
                depth = len(module.path)
                if i not in owners or owners[i][0] <= depth:
                    owners[i] = (depth, type(module).__name__, "/".join(map(str, module.path)))
            out = next_fun(*call_args, **call_kwargs)
            if type(module) in SUPPORTED:
                if context.method_name == "__call__":
                    reason = _unsupported_config(module)
                    calls.append(Call(module, own, out.shape, out.dtype, reason))
                    if reason:
                        refused.update(dict.fromkeys(own.values(), reason))
                elif context.method_name != "setup":  # e.g. Embed.attend (tied weights)
                    reason = f"{type(module).__name__}.{context.method_name}"
                    refused.update(dict.fromkeys(own.values(), reason))
            return out

        with nn.intercept_methods(interceptor):
            return loss(params, example, *args, **kwargs)[0]

    jax.eval_shape(record, params, example)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    covered = {i for c in calls if c.unsupported is None for i in c.roles.values()}
    fallback = tuple(i for i in range(len(paths)) if i not in covered or i in refused)
    if fallback and other_layers == "error":
        lines = []
        for i in fallback:
            if i in refused:
                what = f"{refused[i]} ({owners[i][1]} at '{owners[i][2]}')"
            elif i in owners:
                what = f"{owners[i][1]} at '{owners[i][2]}'"
            else:
                what = "a parameter used outside any flax layer (or transformed before it)"
            lines.append(f"params{paths[i]}: {what}")
        raise ValueError(
            "method='ghost' has no ghost-norm rule for these parameters (supported: flax "
            "Dense, DenseGeneral, Embed, Conv, called with their parameters unchanged): "
            + "; ".join(lines)
            + ". Pass other_layers='vmap' to take their per-example gradients by vmap."
        )
    return Plan(calls, fallback)


def _flat(x: jax.Array, trailing: int) -> jax.Array:
    """(positions, features): the last ``trailing`` axes are features, the rest positions."""
    x = _wide(x)
    return x.reshape(-1, int(np.prod(x.shape[x.ndim - trailing :])))


def _patches(module, x: jax.Array) -> jax.Array:
    """The input patch under the kernel at each output position: (positions, in·k)."""
    kernel_size = tuple(module.kernel_size)
    n = len(kernel_size)

    def broadcast(v):
        return (1,) * n if v is None else ((v,) * n if isinstance(v, int) else tuple(v))

    batch_dims = x.ndim - n - 1
    x = x[None] if batch_dims == 0 else x.reshape(-1, *x.shape[batch_dims:])
    spec = "N" + "DHW"[3 - n :] + "C" if n <= 3 else None
    patches = jax.lax.conv_general_dilated_patches(
        x,
        filter_shape=kernel_size,
        window_strides=broadcast(module.strides),
        padding=canonicalize_padding(module.padding, n),
        lhs_dilation=broadcast(module.input_dilation),
        rhs_dilation=broadcast(module.kernel_dilation),
        dimension_numbers=(spec, spec[1:-1] + "IO", spec),
    )
    return _flat(patches, 1)


def _inputs_as_rows(module, x: jax.Array):
    """(kind, U): the left factors uₜ of the kernel's outer products, one row per position."""
    if isinstance(module, nn.Embed):
        return "index", x.reshape(-1)
    if isinstance(module, nn.Conv):
        return "dense", _patches(module, x)
    if isinstance(module, nn.DenseGeneral):
        axis = (module.axis,) if isinstance(module.axis, int) else tuple(module.axis)
        axis = tuple(a % x.ndim for a in axis)
        moved = jnp.moveaxis(x, axis, tuple(range(x.ndim - len(axis), x.ndim)))
        return "dense", _flat(moved, len(axis))
    return "dense", _flat(x, 1)


def _feature_axes(module) -> int:
    """How many trailing output axes are features (DenseGeneral may have several)."""
    if isinstance(module, nn.DenseGeneral) and not isinstance(module.features, int):
        return len(module.features)
    return 1


def _squared_norm(kind: str, u: jax.Array | None, v: jax.Array, rows: int) -> jax.Array:
    """‖Σₜ uₜ ⊗ vₜ‖² for one example, by the Gram form or directly, whichever is smaller."""
    t, q = v.shape
    if kind == "ones":
        return jnp.sum(jnp.square(jnp.sum(v, 0)))
    if kind == "index":
        if rows * q < t * t:
            return jnp.sum(jnp.square(jax.ops.segment_sum(v, u, num_segments=rows)))
        return jnp.sum(jnp.where(u[:, None] == u[None, :], v @ v.T, 0))
    p = u.shape[1]
    if p * q < t * t:
        return jnp.sum(jnp.square(u.T @ v))
    return jnp.sum((u @ u.T) * (v @ v.T))


class Term(NamedTuple):
    """A leaf's outer-product factors over a chunk, its calls' positions concatenated:
    ``kind`` ("dense", "index" or "ones"), U (n, T, p) (int (n, T) for "index"; None for
    "ones"), V (n, T, q), and the module (for the kernel's layout)."""

    kind: str
    u: jax.Array | None
    v: jax.Array
    module: Any


def _terms(calls: list, captured: list, deltas: list) -> dict:
    """Leaf index -> its :class:`Term`, from each call's inputs and output gradients."""
    parts: dict[int, list] = {}
    for call, x, delta in zip(calls, captured, deltas, strict=True):
        kind = "index" if isinstance(call.module, nn.Embed) else "dense"
        u = jax.vmap(lambda x, m=call.module: _inputs_as_rows(m, x)[1])(x)
        v = jax.vmap(lambda d, m=call.module: _flat(d, _feature_axes(m)))(delta)
        for role, i in call.roles.items():
            parts.setdefault(i, []).append(("ones", None, v) if role == "bias" else (kind, u, v))
    terms = {}
    for i, group in parts.items():
        kind = group[0][0]
        u = None if kind == "ones" else jnp.concatenate([g[1] for g in group], 1)
        v = jnp.concatenate([g[2] for g in group], 1)
        module = next(c.module for c in calls if i in c.roles.values())
        terms[i] = Term(kind, u, v, module)
    return terms


def _book_kept_grad(term: Term, factors: jax.Array, leaf: jax.Array) -> jax.Array:
    """Σᵢ cᵢ ∂ℓᵢ/∂W from the stored factors (book-keeping: no second backward pass)."""
    cv = term.v * factors.astype(term.v.dtype)[:, None, None]
    if term.kind == "ones":
        return jnp.sum(cv, (0, 1)).reshape(leaf.shape)
    if term.kind == "index":
        rows = jax.ops.segment_sum(
            cv.reshape(-1, cv.shape[-1]), term.u.reshape(-1), num_segments=leaf.shape[0]
        )
        return rows.reshape(leaf.shape)
    flat = jnp.einsum("ntp,ntq->pq", term.u, cv)
    if isinstance(term.module, nn.Conv):  # patch features are (in, *kernel_size)
        kernel_size = tuple(term.module.kernel_size)
        flat = flat.reshape(-1, *kernel_size, flat.shape[-1])
        return jnp.moveaxis(flat, 0, -2).reshape(leaf.shape)
    return flat.reshape(leaf.shape)


def ghost_chunk(loss, scale_fn, max_norm, other_layers):
    """``chunk_fn`` of :func:`per_example_clipped_grad` for ``method="ghost"``: one forward
    pass and one backward pass for the output gradients δ (and the per-example gradients
    of the ``vmap`` leaves); then the norms from the Gram forms, and Σᵢ cᵢ∇ℓᵢ from the same
    stored inputs and δ (Bu et al.'s book-keeping), without a second backward pass."""

    def run(params, chunk, args, kwargs):
        n = jax.tree.leaves(chunk)[0].shape[0]
        example = jax.tree.map(lambda x: x[0], chunk)
        calls, fallback = plan(loss, params, example, args, kwargs, other_layers)
        leaves, treedef = jax.tree.flatten(params)
        probed = [j for j, c in enumerate(calls) if not set(c.roles.values()) & set(fallback)]
        probe_of = {j: k for k, j in enumerate(probed)}
        fb = {i: jnp.broadcast_to(leaves[i], (n, *np.shape(leaves[i]))) for i in fallback}
        probes = [jnp.zeros((n, *calls[j].out_shape), calls[j].out_dtype) for j in probed]

        def one(fb, probes, ex):
            local = list(leaves)
            for i, leaf in fb.items():
                local[i] = leaf
            captured, counter = [], [0]

            def interceptor(next_fun, call_args, call_kwargs, context):
                module = context.module
                if type(module) not in SUPPORTED or context.method_name != "__call__":
                    return next_fun(*call_args, **call_kwargs)
                j = counter[0]
                counter[0] += 1
                out = next_fun(*call_args, **call_kwargs)
                if j in probe_of:
                    inputs = call_args[0] if call_args else call_kwargs["inputs"]
                    captured.append(inputs)
                    out = out + probes[probe_of[j]]
                return out

            with nn.intercept_methods(interceptor):
                value, aux = loss(jax.tree.unflatten(treedef, local), ex, *args, **kwargs)
            return value, (captured, aux)

        def forward(fb, probes):
            return jax.vmap(one)(fb, probes, chunk)

        # Only the probes and the vmap leaves are differentiated: one backward pass.
        values, pullback, (captured, aux) = jax.vjp(forward, fb, probes, has_aux=True)
        fb_grads, deltas = pullback(jnp.ones_like(values))
        terms = _terms([calls[j] for j in probed], captured, deltas)
        squared = jnp.zeros((n,), jnp.float32)  # promoted to float64 by float64 terms
        for i, t in terms.items():
            rows = leaves[i].shape[0] if t.kind == "index" else 0
            per_example = jax.vmap(lambda u, v, t=t, rows=rows: _squared_norm(t.kind, u, v, rows))
            squared = squared + per_example(t.u, t.v)
        if fallback:
            squared = squared + jax.vmap(lambda g: jnp.square(_norm(g)))(fb_grads).astype(
                squared.dtype
            )
        zero = squared == 0
        norms = jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, squared)))
        factors = scale_fn(norms, max_norm)
        grad_sum = [jnp.zeros(np.shape(x), _wide(x).dtype) for x in leaves]
        for i, t in terms.items():
            grad_sum[i] = _book_kept_grad(t, factors, leaves[i]).astype(grad_sum[i].dtype)
        for i, g in weighted_sum(factors, fb_grads).items():
            grad_sum[i] = g
        return ChunkResult(
            jnp.sum(_wide(values)), jax.tree.unflatten(treedef, grad_sum), norms, aux
        )

    return run
