"""Per-leaf update multipliers (layer-wise learning rates) and per-leaf gradient maps.

Both transformations address a leaf by its *path*: the keys leading to it joined by
"/" (dict keys as ``str``, sequence indices in decimal, attribute names), so the flax
parameter ``{"params": {"Dense_0": {"kernel": ...}}}`` is ``"params/Dense_0/kernel"``.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
Multipliers = Mapping[str, float] | Callable[[str, jax.Array], Any] | PyTree


def key_name(key: Any) -> str:
    """The text of one path entry: dict key, sequence index or attribute name."""
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def leaf_path(key_path: tuple) -> str:
    """Joins a ``jax.tree_util`` key path with "/": ``(DictKey("a"), SequenceKey(0))`` -> "a/0"."""
    return "/".join(key_name(k) for k in key_path)


def map_with_path(fn: Callable[[str, Any], Any], tree: PyTree) -> PyTree:
    """``jax.tree.map`` whose function also receives each leaf's "/"-joined path."""
    return jax.tree_util.tree_map_with_path(lambda kp, leaf: fn(leaf_path(kp), leaf), tree)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, numbers.Real):
        return True
    return isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 0


def _scale_leaf(update: jax.Array, multiplier: Any) -> jax.Array:
    """``update * multiplier`` computed in float32 or wider, returned in the update's dtype."""
    if isinstance(multiplier, numbers.Real) and not isinstance(multiplier, bool):
        if multiplier == 1:
            return update
        if multiplier == 0:  # exactly frozen, even where the update is not finite
            return jnp.zeros_like(update)
    compute = jnp.promote_types(update.dtype, jnp.float32)
    scaled = update.astype(compute) * jnp.asarray(multiplier, compute)
    return scaled.astype(update.dtype)


def _regex_table(multipliers: Mapping[str, Any]) -> list[tuple[re.Pattern, Any]]:
    table = []
    for pattern, value in multipliers.items():
        try:
            compiled = re.compile(pattern)
        except re.error as err:
            raise ValueError(
                f"multipliers: {pattern!r} is not a valid regular expression ({err})"
            ) from None
        table.append((compiled, value))
    return table


def _is_regex_table(multipliers: Any) -> bool:
    return (
        isinstance(multipliers, Mapping)
        and all(isinstance(k, str) for k in multipliers)
        and all(_is_number(v) for v in multipliers.values())
    )


def _check_numbers(multipliers: PyTree) -> None:
    leaves = jax.tree.leaves(multipliers)
    if not leaves:
        raise ValueError(f"multipliers must hold at least one number, got {multipliers!r}")
    for leaf in leaves:
        if not _is_number(leaf):
            raise TypeError(
                "multipliers must be a dict of regex -> float, a callable (path, leaf) -> float "
                f"or a pytree of floats; found the leaf {leaf!r} of type {type(leaf).__name__}"
            )


def scale_by_multipliers(multipliers: Multipliers) -> optax.GradientTransformation:
    r"""Multiplies each leaf's update by its own factor: an exact layer-wise learning rate.

    .. math:: u_i \leftarrow m_i\,u_i

    Chained after any optimizer (``optax.chain(optax.adam(lr), scale_by_multipliers(m))``),
    leaf ``i`` moves exactly as it would under the same optimizer with learning rate
    ``m_i·lr``: the optimizer's state is untouched and its step is linear in the learning
    rate. ``m_i = 0`` freezes the leaf (its update is exactly zero).

    This is the exact form of the re-parameterisation trick: training φ with θ = λφ
    multiplies θ's gradient by λ and its step by λ again, so SGD (with or without
    momentum) sees the learning rate λ²·lr and Adam λ·lr, the latter only when
    ε = 0 (otherwise it is Adam with ε replaced by ε/λ). The trick also needs the
    stored weights rescaled by 1/λ (or 1/√λ) and cannot be changed once the model is
    built; a multiplier on the update has none of these caveats and works for any
    optimizer.

    A leaf's *path* joins its keys with "/": dict keys as ``str``, sequence indices in
    decimal, attribute names; flax parameters give ``"params/Dense_0/kernel"``.

    Args:
      multipliers: one of
        * a flat dict ``{regex: float}``: the first pattern that ``re.fullmatch``-es
          the leaf's path gives its factor (dict order); unmatched leaves get 1.0;
        * a callable ``(path, update_leaf) -> float`` (or a scalar array), called
          once per leaf when the update is traced;
        * a pytree of floats with the structure of the parameters, or a prefix of it
          (a float then applies to the whole subtree), e.g.
          ``{"params": {"Dense_0": 0.0, "Dense_1": 0.1, "Dense_2": 1.0}}``.
          A flat dict of floats is read as the regex table above.

    Returns:
      A stateless ``optax.GradientTransformation``; updates keep their dtype (the
      product is formed in float32 or wider).

    Example:
      >>> tx = optax.chain(
      ...     optax.adam(1e-3),
      ...     gj.optim.scale_by_multipliers({r"params/Dense_0/.*": 0.0, r".*/bias": 0.1}),
      ... )

    References:
      Su Jianlin, "Making Keras cooler: layer-wise learning rates and free gradients"
      (kexue.fm/archives/6418), 2019.
    """
    if callable(multipliers) and not isinstance(multipliers, Mapping):
        resolve = multipliers

        def factors(updates):
            return map_with_path(lambda path, u: _checked_factor(resolve(path, u), path), updates)

    elif _is_regex_table(multipliers):
        table = _regex_table(multipliers)

        def factor_of(path: str) -> Any:
            for pattern, value in table:
                if pattern.fullmatch(path):
                    return value
            return 1.0

        def factors(updates):
            return map_with_path(lambda path, _: factor_of(path), updates)

    else:
        _check_numbers(multipliers)
        prefix = multipliers

        def factors(updates):
            try:
                return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), prefix, updates)
            except ValueError as err:
                raise ValueError(
                    "multipliers: the pytree of floats must have the structure of the updates "
                    f"or a prefix of it; got {jax.tree.structure(prefix)} for updates with "
                    f"{jax.tree.structure(updates)} ({err})"
                ) from None

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(_scale_leaf, updates, factors(updates)), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _checked_factor(value: Any, path: str) -> Any:
    if isinstance(value, bool) or not (
        isinstance(value, numbers.Real) or (hasattr(value, "shape") and np.ndim(value) == 0)
    ):
        raise TypeError(
            f"multipliers: the callable must return a float or a scalar array; for the leaf "
            f"{path!r} it returned {value!r}"
        )
    return value


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
      A stateless ``optax.GradientTransformation``.

    Example:
      >>> freeze_biases = gj.optim.map_gradients(
      ...     lambda path, g: jnp.zeros_like(g) if path.endswith("bias") else g)
      >>> tx = optax.chain(freeze_biases, optax.sgd(0.1))

    References:
      Su Jianlin, "Making Keras cooler: layer-wise learning rates and free gradients"
      (kexue.fm/archives/6418), 2019.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable (path, g) -> g, got {type(fn).__name__}")

    def apply(path: str, g: jax.Array) -> jax.Array:
        out = jnp.asarray(fn(path, g))
        if out.shape != np.shape(g):
            raise ValueError(
                f"fn must keep each gradient's shape; for the leaf {path!r} of shape {np.shape(g)} "
                f"it returned shape {out.shape}"
            )
        return out

    def update_fn(updates, state, params=None):
        del params
        return map_with_path(apply, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)
