"""Argument checks shared by the areas: each error names the argument it rejects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def is_concrete(value: Any) -> bool:
    """False for a value traced under ``jit``/``vmap``, whose entries cannot be checked."""
    return not isinstance(value, jax.core.Tracer)


def all_finite(*trees: PyTree) -> jax.Array:
    """Whether every entry of every leaf is finite, as a (traced) bool scalar: the rule
    behind the result flags (``converged``, ``finite``) when data are traced. ``None``
    arguments have no leaves and count as finite."""
    leaves = jax.tree.leaves(trees)
    if not leaves:
        return jnp.array(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def concrete_any(value: Any, predicate: Callable[[jax.Array], jax.Array]) -> bool:
    """``any(predicate(value))`` evaluated now; False for a traced value (left to the result).

    A concrete array is tested where it lives (on its devices, sharded or not, with only
    the answer brought back) and eagerly even inside a caller's ``jit``, where jnp on a
    closed-over constant would otherwise be staged into a tracer.
    """
    if not is_concrete(value):
        return False
    with jax.ensure_compile_time_eval():
        value = jnp.asarray(value)
        return value.size > 0 and bool(jnp.any(predicate(value)))


def is_real_dtype(dtype: Any) -> bool:
    """The one dtype rule for numbers: int or floating; bool and complex are not numbers."""
    return bool(jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating))


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """A static int (not bool) in ``[low, high]``, returned as ``int``.

    Python and NumPy ints and concrete 0-d integer arrays (``jnp.int32(3)``) pass. A
    traced integer is a TypeError: these arguments set shapes and loop lengths, which
    must be known when the function is traced.
    """
    if isinstance(value, (jax.Array, np.ndarray)) and value.shape == ():
        if jnp.issubdtype(value.dtype, jnp.integer):
            if not is_concrete(value):
                raise TypeError(
                    f"{name} must be a static (concrete) int, got a traced {value.dtype} "
                    "value: pass a Python int, or mark it static in jax.jit"
                )
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def floating_tree(name: str, tree: PyTree, hint: str = "") -> PyTree:
    """A non-empty pytree of floating arrays, leaves converted to jax arrays.

    ``hint`` is appended to the dtype error (say, what to pass instead).
    """
    for leaf in jax.tree.leaves(tree):
        if _dtype_of(leaf) is None:  # a string or object: named here, not by jnp
            got = type(leaf).__name__
            raise TypeError(f"{name} must be floating-point arrays{hint}, got {got}")
    tree = jax.tree.map(jnp.asarray, tree)
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{name} must contain at least one array, got an empty pytree")
    for leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise TypeError(
                f"{name} must be floating-point arrays{hint}, got a leaf of dtype {leaf.dtype}"
            )
    return tree


def check_key(name: str, key: Any) -> jax.Array:
    """A PRNG key: a typed key array of shape () or a legacy ``uint32`` array of shape (2,)."""
    if not isinstance(key, jax.Array):
        raise TypeError(
            f"{name} must be a PRNG key (jax.random.key(seed)), got {type(key).__name__}"
        )
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(
                f"{name} must be a single PRNG key, got key array of shape {key.shape}"
            )
    elif key.dtype != jnp.uint32 or key.shape != (2,):
        raise TypeError(
            f"{name} must be a PRNG key (jax.random.key(seed)), got {key.dtype} array of "
            f"shape {key.shape}"
        )
    return key


def check_scalar(
    name: str,
    value: Any,
    low: float | None = None,
    *,
    strict: bool = False,
    high: float | None = None,
) -> Any:
    """A real scalar ``>= low`` (``> low`` if ``strict``) and ``<= high``.

    Python and NumPy numbers and 0-d NumPy/JAX arrays are accepted; bools, strings,
    None and arrays of other shapes are TypeErrors. Concrete values must be finite
    and in range (Python and NumPy numbers are returned as ``float``); traced ones
    pass unchecked, their outcome shows in the result.
    """
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a real number, got bool {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        value = float(value)
    elif isinstance(value, (jax.Array, np.ndarray)) and value.shape == ():
        if not is_real_dtype(value.dtype):
            raise TypeError(f"{name} must be a real number, got dtype {value.dtype}")
        if not is_concrete(value):
            return value
    else:
        shape = getattr(value, "shape", None)
        what = f"shape {shape}" if shape is not None else f"{type(value).__name__} {value!r}"
        raise TypeError(f"{name} must be a real scalar, got {what}")
    number = float(value)
    above = low is None or number > low or (not strict and number == low)
    below = high is None or number <= high
    if not (np.isfinite(number) and above and below):
        rule = ["finite"]
        if low is not None:
            rule.append(f"{'>' if strict else '>='} {low}")
        if high is not None:
            rule.append(f"<= {high}")
        raise ValueError(f"{name} must be {' and '.join(rule)}, got {number}")
    return value


def check_finite_tree(name: str, tree: PyTree) -> None:
    """NaN or Inf in a concrete leaf is a ValueError; traced leaves are left to the result."""
    for leaf in jax.tree.leaves(tree):
        if concrete_any(leaf, lambda v: ~jnp.isfinite(v)):
            raise ValueError(f"{name} must be finite, got NaN or Inf entries")


def check_scalar_fun(
    name: str, fun: Any, *example_args: Any, hint: str = ""
) -> jax.ShapeDtypeStruct:
    """``fun(*example_args)`` must return a real floating scalar; returns its shape/dtype.

    Checked by shape evaluation (``jax.eval_shape``): nothing runs. ``hint`` is
    appended to the shape error (say, how to select one output).
    """
    check_callable(name, fun)
    out = jax.eval_shape(fun, *example_args)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"{name} must return a scalar, got output of shape {shape}{hint}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name} must return a real floating scalar, got dtype {out.dtype}")
    return out


def check_callable(name: str, fn: Any) -> Any:
    """A callable (a function, a module's ``apply``); returned unchanged."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
    return fn


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of the option strings ``choices``; returned unchanged."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """A Python or NumPy bool (a flag: ``0``, ``"no"`` or an array are errors)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def _dtype_of(value: Any) -> Any:
    """``value``'s dtype, or None for what JAX cannot hold (strings, None, objects)."""
    if isinstance(value, str | bytes):  # jnp would read "a" as a dtype name
        return None
    if hasattr(value, "dtype"):  # arrays, tracers, NumPy scalars
        return np.dtype(value.dtype)
    try:  # Python scalars and nested lists
        return jnp.asarray(value).dtype
    except (TypeError, ValueError):
        return None


def inexact_tree(name: str, tree: PyTree) -> PyTree:
    """Every leaf floating or complex (gradients, updates); returned unchanged.

    An integer or bool leaf is a TypeError naming its path: scaling it would truncate.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        where, dtype = f"{name}{jax.tree_util.keystr(path)}", _dtype_of(leaf)
        if dtype is None:
            raise TypeError(f"{where} must be an array, got {type(leaf).__name__}")
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(f"{where} must be floating or complex, got dtype {dtype}")
    return tree


def real_array(name: str, value: Any) -> jax.Array:
    """An int or floating array (not bool, not complex), converted with ``jnp.asarray``.

    Dense only: a SciPy sparse matrix or a ``jax.experimental.sparse`` array is a TypeError.
    """
    if type(value).__module__.startswith(("scipy.sparse", "jax.experimental.sparse")):
        raise TypeError(
            f"{name} must be a dense array (dense input is required), got the sparse "
            f"{type(value).__name__}: convert it with .toarray() (SciPy) or .todense() (BCOO)"
        )
    dtype = _dtype_of(value)
    if dtype is None:
        raise TypeError(f"{name} must be a real array, got {type(value).__name__}")
    if not is_real_dtype(dtype):
        raise TypeError(f"{name} must be a real (int or floating) array, got dtype {dtype}")
    if is_concrete(value):  # NumPy data closed over in a jit stay concrete (checkable)
        with jax.ensure_compile_time_eval():
            return jnp.asarray(value)
    return jnp.asarray(value)


def index_array(name: str, value: Any, size: int | None = None) -> jax.Array:
    """A non-empty 1-D integer (not bool) array of indices, in ``[0, size)`` where concrete.

    Lists and NumPy arrays are checked before conversion (under ``jit`` the converted
    constant would be traced).
    """
    dtype = _dtype_of(value)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        what = f"dtype {dtype}" if dtype is not None else type(value).__name__
        raise TypeError(f"{name} must be an integer array of indices, got {what}")
    if not isinstance(value, jax.Array):
        value = np.asarray(value)
    if value.ndim != 1 or value.shape[0] == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D array of indices, got shape {value.shape}"
        )
    if size is not None and concrete_any(value, lambda v: (v < 0) | (v >= size)):
        raise ValueError(f"{name} must be indices in [0, {size}), got entries out of range")
    return jnp.asarray(value)


def nan_outside(value: Any, low: float, *, strict: bool = False) -> Any:
    """A traced scalar option below ``low`` (or at it, if ``strict``) becomes NaN.

    The traced half of :func:`check_scalar`'s range rule: a concrete value was checked
    there and is returned unchanged; a traced one cannot raise, so an out-of-range value
    turns the result NaN instead of giving a finite answer of the wrong sign.
    """
    if is_concrete(value):
        return value
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        value = value.astype(jnp.float32)
    ok = value > low if strict else value >= low
    return jnp.where(ok, value, jnp.nan)


def floating_inputs(name: str, tree: PyTree, hint: str = "") -> PyTree:
    """A pytree of floating arrays with at least one entry, finite where concrete."""
    tree = floating_tree(name, tree, hint)
    if not any(leaf.size for leaf in jax.tree.leaves(tree)):
        shapes = [leaf.shape for leaf in jax.tree.leaves(tree)]
        raise ValueError(f"{name} must have at least one entry, got arrays of shapes {shapes}")
    check_finite_tree(name, tree)
    return tree


def check_array_fun(name: str, fun: Any, *example_args: Any) -> jax.ShapeDtypeStruct:
    """``fun(*example_args)`` must return one floating array; returns its shape/dtype.

    The array-valued sibling of :func:`check_scalar_fun` (logits, a vector function),
    checked by shape evaluation.
    """
    check_callable(name, fun)
    out = jax.eval_shape(fun, *example_args)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"{name} must return one array, got {type(out).__name__}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{name} must return floating values, got dtype {out.dtype}")
    return out


def as_mask(name: str, mask: PyTree | None, like: PyTree) -> PyTree | None:
    """``None``, or a bool pytree shaped like ``like`` whose leaves are broadcast to it.

    Each leaf's shape is a prefix of its ``like`` leaf's shape ((L,) for (L, E)
    embeddings); trailing axes are added. Masks are bools: a 0/1 number array is a
    TypeError, as a bool is no number.
    """
    if mask is None:
        return None
    like_leaves, treedef = jax.tree.flatten(like)
    mask_leaves, mask_def = jax.tree.flatten(mask)
    if mask_def != treedef:
        raise ValueError(f"{name} must have the structure of x ({treedef}), got {mask_def}")
    out = []
    for m, leaf in zip(mask_leaves, like_leaves, strict=True):
        dtype = _dtype_of(m)
        if dtype != np.dtype(bool):
            raise TypeError(f"{name} must be a bool array, got {dtype or type(m).__name__}")
        m = jnp.asarray(m)
        if m.shape != leaf.shape[: m.ndim]:
            raise ValueError(
                f"{name}'s shape must be a prefix of x's shape {leaf.shape}, got {m.shape}"
            )
        out.append(m.reshape(m.shape + (1,) * (leaf.ndim - m.ndim)))
    return jax.tree.unflatten(treedef, out)
