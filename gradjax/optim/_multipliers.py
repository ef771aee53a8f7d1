"""Per-leaf update multipliers (layer-wise learning rates) and per-leaf gradient maps.

Both transformations address a leaf by its *path*: the keys leading to it joined by
"/" (``jax.tree_util.keystr(key_path, simple=True, separator="/")``: dict keys as ``str``,
sequence indices in decimal, attribute names), so the flax parameter
``{"params": {"Dense_0": {"kernel": ...}}}`` is ``"params/Dense_0/kernel"``. A regex
addresses a leaf when it fullmatches the leaf's path or a prefix of it ending at a key
boundary (``"params/Dense_0"`` addresses the whole layer).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradjax._checks import check_bool, check_callable, check_scalar, inexact_tree

PyTree = Any
Multipliers = Mapping[str, float] | Callable[[str, jax.Array], Any] | PyTree


def _path(key_path: tuple) -> str:
    """A leaf's "/"-joined path: ``(DictKey("a"), SequenceKey(0))`` -> "a/0"."""
    return jax.tree_util.keystr(key_path, simple=True, separator="/")


def _map_with_path(fn: Callable[[str, Any], Any], tree: PyTree) -> PyTree:
    """``jax.tree.map`` whose function also receives each leaf's "/"-joined path."""
    return jax.tree_util.tree_map_with_path(lambda kp, leaf: fn(_path(kp), leaf), tree)


def _scale_leaf(update: jax.Array, multiplier: Any) -> jax.Array:
    """``update * multiplier`` computed in float32 or wider, returned in the update's dtype.

    A multiplier of 0 gives 0 where the update is finite and NaN where it is not: a
    failing gradient shows even on a frozen leaf.
    """
    if isinstance(multiplier, int | float | np.number) and multiplier == 1:
        return update
    update = jnp.asarray(update)
    compute = jnp.promote_types(update.dtype, jnp.float32)
    scaled = update.astype(compute) * jnp.asarray(multiplier, compute)
    return scaled.astype(update.dtype)


def _is_regex_table(multipliers: Any) -> bool:
    """A non-empty flat dict of str keys whose values are leaves (not sub-trees)."""
    return (
        isinstance(multipliers, Mapping)
        and bool(multipliers)
        and all(isinstance(k, str) for k in multipliers)
        and all(jax.tree_util.treedef_is_leaf(jax.tree.structure(v)) for v in multipliers.values())
    )


def _regex_table(multipliers: Mapping[str, Any]) -> list[tuple[re.Pattern, Any]]:
    table = []
    for pattern, value in multipliers.items():
        check_scalar(f"multipliers[{pattern!r}]", value)
        try:
            compiled = re.compile(pattern)
        except re.error as err:
            raise ValueError(
                f"multipliers: {pattern!r} is not a valid regular expression ({err})"
            ) from None
        table.append((compiled, value))
    return table


def _first_match(table: list[tuple[re.Pattern, Any]], key_path: tuple) -> int | None:
    """Index of the first pattern that fullmatches the leaf's path or a prefix of it."""
    prefixes = [_path(key_path[:i]) for i in range(1, len(key_path) + 1)] or [""]
    for index, (pattern, _) in enumerate(table):
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            return index
    return None


def _regex_factors(table, tree: PyTree, allow_unused: bool) -> PyTree:
    """Each leaf's factor (1.0 if no pattern matches); unused patterns are a ValueError."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    winners = [_first_match(table, key_path) for key_path, _ in paths]
    unused = [table[i][0].pattern for i in range(len(table)) if i not in winners]
    if paths and unused and not allow_unused:
        sample = ", ".join(repr(_path(kp)) for kp, _ in paths[:4])
        more = ", ..." if len(paths) > 4 else ""
        raise ValueError(
            f"multipliers: the patterns {unused} apply to no leaf (they match no leaf path "
            f"or path prefix, or only leaves an earlier pattern already took); the paths "
            f"are {sample}{more}. Pass allow_unused=True to accept this."
        )
    factors = [1.0 if i is None else table[i][1] for i in winners]
    return jax.tree.unflatten(treedef, factors)


def _check_pytree(multipliers: PyTree) -> None:
    leaves = jax.tree_util.tree_leaves_with_path(multipliers)
    if not leaves:
        raise ValueError(f"multipliers must hold at least one number, got {multipliers!r}")
    for key_path, leaf in leaves:
        check_scalar(f"multipliers{jax.tree_util.keystr(key_path)}", leaf)


def _prefix_factors(prefix: PyTree, updates: PyTree) -> PyTree:
    try:
        return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), prefix, updates)
    except ValueError as err:
        raise ValueError(
            "multipliers: the pytree of floats must have the structure of the updates "
            f"or a prefix of it; got {jax.tree.structure(prefix)} for updates with "
            f"{jax.tree.structure(updates)} ({err})"
        ) from None


def scale_by_multipliers(
    multipliers: Multipliers, *, allow_unused: bool = False
) -> optax.GradientTransformation:
    r"""Multiplies each leaf's update by its own factor: an exact layer-wise learning rate.

    .. math:: u_i \leftarrow m_i\,u_i

    Chained after any optimizer (``optax.chain(optax.adam(lr), scale_by_multipliers(m))``),
    leaf ``i`` moves exactly as it would under the same optimizer with learning rate
    ``m_i·lr``: the optimizer's state is untouched and its step is linear in the learning
    rate. ``m_i = 0`` freezes the leaf: its update is zero wherever the incoming update is
    finite (a NaN or Inf update stays NaN, so a failing gradient is never masked).

    This is the exact form of the re-parameterisation trick: training φ with θ = λφ
    multiplies θ's gradient by λ and its step by λ again, so SGD (with or without
    momentum) sees the learning rate λ²·lr and Adam λ·lr, the latter only when
    ε = 0 (otherwise it is Adam with ε replaced by ε/λ). The trick also needs the
    stored weights rescaled by 1/λ (or 1/√λ) and cannot be changed once the model is
    built; a multiplier on the update has none of these caveats and works for any
    optimizer.

    A leaf's *path* joins its keys with "/" (``jax.tree_util.keystr(path, simple=True,
    separator="/")``): dict keys as ``str``, sequence indices in decimal, attribute
    names; flax parameters give ``"params/Dense_0/kernel"``.

    Args:
      multipliers: one of

        * a flat dict ``{regex: float}``. A pattern *matches* a leaf when it
          ``re.fullmatch``-es the leaf's path or one of its prefixes ending at a key
          boundary, so ``{"enc": 0.0}`` freezes every leaf under ``"enc/"`` (and
          ``"enc/w"`` only that leaf). The first matching pattern (dict order) gives the
          factor; leaves no pattern matches get 1.0. A pattern that gives its factor to
          no leaf (it matches nothing, or only leaves an earlier pattern took) is a
          ``ValueError`` at ``init`` and at ``update``, unless ``allow_unused``.
        * a callable ``(path, update_leaf) -> float`` (or a scalar array), called
          once per leaf when the update is traced;
        * a pytree of floats with the structure of the parameters, or a prefix of it
          (a float then applies to the whole subtree), e.g.
          ``{"params": {"Dense_0": 0.0, "Dense_1": 0.1, "Dense_2": 1.0}}``.
          A flat dict of floats is read as the regex table above.

        Factors are real scalars (Python, NumPy or JAX; traced ones pass unchecked),
        finite; a negative factor reverses that leaf's step (gradient reversal).
      allow_unused: accept regex patterns that apply to no leaf (default ``False``).

    Returns:
      A stateless ``optax.GradientTransformation``; updates keep their dtype (the
      product is formed in float32 or wider; complex updates are scaled as such).
      Integer updates are a ``TypeError`` naming ``updates``.

    Example:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from gradjax import optim
      >>> grads = {"enc": {"w": jnp.ones(2), "b": jnp.ones(1)}, "dec": jnp.ones(2)}
      >>> tx = optim.scale_by_multipliers({"enc": 0.0, "dec": 0.5})
      >>> updates, _ = tx.update(grads, tx.init(grads))
      >>> updates["enc"]["w"], updates["dec"]
      (Array([0., 0.], dtype=float32), Array([0.5, 0.5], dtype=float32))
      >>> tx = optax.chain(
      ...     optax.adam(1e-3),
      ...     optim.scale_by_multipliers({r"params/Dense_0": 0.0, r".*/bias": 0.1}),
      ... )

    References:
      Su Jianlin, "Making Keras cooler: layer-wise learning rates and free gradients"
      (kexue.fm/archives/6418), 2019.
    """
    allow_unused = check_bool("allow_unused", allow_unused)
    is_callable = callable(multipliers) and not isinstance(multipliers, Mapping)
    if is_callable:
        resolve = multipliers

        def factors(updates):
            return _map_with_path(
                lambda path, u: check_scalar(f"multipliers({path!r}, leaf)", resolve(path, u)),
                updates,
            )

    elif _is_regex_table(multipliers):
        table = _regex_table(multipliers)

        def factors(updates):
            return _regex_factors(table, updates, allow_unused)

    else:
        _check_pytree(multipliers)

        def factors(updates):
            return _prefix_factors(multipliers, updates)

    def init_fn(params):
        if not is_callable and jax.tree.leaves(params):
            factors(params)  # an unused pattern or a mismatched pytree fails here already
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        inexact_tree("updates", updates)
        return jax.tree.map(_scale_leaf, updates, factors(updates)), state

    return optax.GradientTransformation(init_fn, update_fn)


def map_gradients(fn: Callable[[str, jax.Array], jax.Array]) -> optax.GradientTransformation:
    r"""Replaces each leaf's gradient by ``fn(path, g)``: a free, path-aware gradient hook.

    .. math:: g_i \leftarrow f(\text{path}_i, g_i)

    Place it first in an ``optax.chain`` to edit gradients before the optimizer sees
    them (clip one layer by its L1 norm, zero another, add noise keyed on a fixed
    seed...). The function runs when the update is traced, once per leaf, so any
    Python branching on ``path`` costs nothing at run time.

    Args:
      fn: ``(path, g) -> g'`` with ``g'`` of ``g``'s shape; ``path`` is the leaf's
        "/"-joined key path (``"params/Dense_0/kernel"`` for flax parameters).

    Returns:
      A stateless ``optax.GradientTransformation``. Each output is cast back to its
      gradient's dtype (``fn`` returning ``g > 0`` or a float32 array for a bf16
      leaf does not change the update's dtype); a complex output for a real gradient
      is a ``TypeError``, as are integer gradients (naming ``updates``).

    Example:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from gradjax import optim
      >>> freeze_biases = optim.map_gradients(
      ...     lambda path, g: jnp.zeros_like(g) if path.endswith("bias") else g)
      >>> grads = {"dense": {"bias": jnp.ones(2), "kernel": jnp.ones(2)}}
      >>> freeze_biases.update(grads, freeze_biases.init(grads))[0]["dense"]
      {'bias': Array([0., 0.], dtype=float32), 'kernel': Array([1., 1.], dtype=float32)}
      >>> tx = optax.chain(freeze_biases, optax.sgd(0.1))

    References:
      Su Jianlin, "Making Keras cooler: layer-wise learning rates and free gradients"
      (kexue.fm/archives/6418), 2019.
    """
    check_callable("fn", fn)

    def apply(path: str, g: jax.Array) -> jax.Array:
        out = fn(path, g)
        try:
            out = jnp.asarray(out)
        except (TypeError, ValueError):
            raise TypeError(
                f"fn must return an array; for the leaf {path!r} it returned {type(out).__name__}"
            ) from None
        if out.shape != np.shape(g):
            raise ValueError(
                f"fn must keep each gradient's shape; for the leaf {path!r} of shape {np.shape(g)} "
                f"it returned shape {out.shape}"
            )
        if jnp.iscomplexobj(out) and not jnp.iscomplexobj(g):
            raise TypeError(
                f"fn returned a complex array for the real gradient {path!r}; "
                "its imaginary part would be dropped"
            )
        return out.astype(jnp.result_type(g))

    def update_fn(updates, state, params=None):
        del params
        inexact_tree("updates", updates)
        return _map_with_path(apply, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)
