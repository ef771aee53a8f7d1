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


def _ghost_squared_norms(calls: list, captured: list, deltas: list, leaves: list) -> jax.Array:
    """One example's Σ over covered leaves of ‖∂ℓ/∂W‖², the calls of a leaf concatenated."""
    terms: dict[int, list] = {}
    for call, x, delta in zip(calls, captured, deltas, strict=True):
        v = _flat(delta, _feature_axes(call.module))
        kind, u = _inputs_as_rows(call.module, x)
        for role, i in call.roles.items():
            entry = ("ones", None) if role == "bias" else (kind, u)
            terms.setdefault(i, []).append((*entry, v))
    total = jnp.zeros([], jnp.float32)  # promoted to float64 by float64 terms
    for i, parts in terms.items():
        kind = parts[0][0]
        u = None if kind == "ones" else jnp.concatenate([p[1] for p in parts], 0)
        v = jnp.concatenate([p[2] for p in parts], 0)
        rows = leaves[i].shape[0] if kind == "index" else 0
        total = total + _squared_norm(kind, u, v, rows)
    return total


def ghost_chunk(loss, scale_fn, max_norm, other_layers):
    """``chunk_fn`` of :func:`per_example_clipped_grad` for ``method="ghost"``: one forward
    pass, a backward pass for the output gradients δ (and the per-example gradients of the
    ``vmap`` leaves), then one for Σᵢ cᵢ∇ℓᵢ."""

    def run(params, chunk, args, kwargs):
        n = jax.tree.leaves(chunk)[0].shape[0]
        example = jax.tree.map(lambda x: x[0], chunk)
        calls, fallback = plan(loss, params, example, args, kwargs, other_layers)
        leaves, treedef = jax.tree.flatten(params)
        probed = [j for j, c in enumerate(calls) if not set(c.roles.values()) & set(fallback)]
        probe_of = {j: k for k, j in enumerate(probed)}
        fb = {i: jnp.broadcast_to(leaves[i], (n, *np.shape(leaves[i]))) for i in fallback}
        probes = [jnp.zeros((n, *calls[j].out_shape), calls[j].out_dtype) for j in probed]

        def one(core, fb, probes, ex):
            local = list(core)
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

        def forward(core, fb, probes):
            return jax.vmap(one, in_axes=(None, 0, 0, 0))(core, fb, probes, chunk)

        values, pullback, (captured, aux) = jax.vjp(forward, leaves, fb, probes, has_aux=True)
        _, fb_grads, deltas = pullback(jnp.ones_like(values))
        ghost_calls = [calls[j] for j in probed]
        squared = jax.vmap(
            lambda c, d: _ghost_squared_norms(ghost_calls, c, d, leaves), axis_size=n
        )(captured, deltas)
        if fallback:
            squared = squared + jax.vmap(lambda g: jnp.square(_norm(g)))(fb_grads).astype(
                squared.dtype
            )
        zero = squared == 0
        norms = jnp.where(zero, 0, jnp.sqrt(jnp.where(zero, 1, squared)))
        factors = scale_fn(norms, max_norm)
        core_grads, _, _ = pullback(factors.astype(values.dtype))
        grad_sum = [_wide(g) for g in core_grads]
        for i, g in weighted_sum(factors, fb_grads).items():
            grad_sum[i] = g
        return ChunkResult(
            jnp.sum(_wide(values)), jax.tree.unflatten(treedef, grad_sum), norms, aux
        )

    return run
