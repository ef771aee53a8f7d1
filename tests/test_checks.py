"""The shared argument rules of gradjax._checks, one kind of value at a time."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradjax import em
from gradjax._checks import (
    as_mask,
    check_array_fun,
    check_bool,
    check_callable,
    check_choice,
    check_finite_tree,
    check_int,
    check_key,
    check_scalar,
    concrete_any,
    floating_inputs,
    is_concrete,
    nan_outside,
    real_array,
)


def traced(check, value):
    """``check(v)`` with ``v`` a tracer of ``value`` (under ``jax.jit``)."""
    seen = []

    def body(v):
        seen.append(check(v))
        return v

    jax.jit(body)(value)
    return seen[0]


@pytest.mark.parametrize(
    "value", [3, np.int32(3), np.int64(3), np.array(3), jnp.int32(3), jnp.array(3, jnp.int8)]
)
def test_check_int_accepts_python_numpy_and_concrete_jax_ints(value):
    out = check_int("n", value, 1)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize(
    "value, words",
    [
        (True, "n must be an int, got bool"),
        (np.bool_(True), "n must be an int"),
        (3.0, "n must be an int, got float"),
        (np.float32(3), "n must be an int"),
        (jnp.array(3.0), "n must be an int"),
        (jnp.array([3]), "n must be an int"),
        ("3", "n must be an int, got str"),
        (None, "n must be an int, got NoneType"),
    ],
)
def test_check_int_rejects_non_ints(value, words):
    with pytest.raises(TypeError, match=words):
        check_int("n", value, 1)


@pytest.mark.parametrize("value", [0, np.int32(0), jnp.int32(0), 5, jnp.int32(5)])
def test_check_int_bounds(value):
    with pytest.raises(ValueError, match=r"n must be in \[1, 4\], got"):
        check_int("n", value, 1, 4)


def test_check_int_traced_is_a_type_error_naming_the_argument():
    with pytest.raises(TypeError, match="n must be a static"):
        traced(lambda v: check_int("n", v, 1), jnp.int32(3))


@pytest.mark.parametrize(
    "value", [0.5, 1, np.float32(0.5), np.float64(0.5), np.int8(1), np.array(0.5), jnp.array(0.5)]
)
def test_check_scalar_accepts_numbers_and_concrete_scalars(value):
    assert float(check_scalar("tol", value, 0.0)) == float(value)


def test_check_scalar_returns_python_numbers_as_float():
    assert type(check_scalar("tol", np.float32(0.5), 0.0)) is float
    assert type(check_scalar("tol", 2, 0.0)) is float


@pytest.mark.parametrize(
    "value", [-1.0, np.float32(-1), jnp.array(-1.0), jnp.int32(-1), np.array(-1.0)]
)
def test_check_scalar_below_low_is_a_value_error(value):
    with pytest.raises(ValueError, match=re.escape("tol must be finite and >= 0.0, got -1.0")):
        check_scalar("tol", value, 0.0)


@pytest.mark.parametrize("value", [0.0, np.float32(0), jnp.array(0.0)])
def test_check_scalar_strict(value):
    assert float(check_scalar("tol", value, 0.0)) == 0.0
    with pytest.raises(ValueError, match=re.escape("tol must be finite and > 0.0")):
        check_scalar("tol", value, 0.0, strict=True)


@pytest.mark.parametrize("value", [1.5, np.float32(1.5), jnp.array(1.5)])
def test_check_scalar_high(value):
    assert check_scalar("r", 1.0, 0.0, high=1.0) == 1.0
    with pytest.raises(
        ValueError, match=re.escape("r must be finite and >= 0.0 and <= 1.0, got 1.5")
    ):
        check_scalar("r", value, 0.0, high=1.0)


@pytest.mark.parametrize(
    "value", [float("nan"), np.float32("nan"), jnp.array(jnp.nan), float("inf"), -np.inf]
)
def test_check_scalar_rejects_nan_and_inf(value):
    with pytest.raises(ValueError, match="x must be finite"):
        check_scalar("x", value)
    with pytest.raises(ValueError, match="x must be finite"):
        check_scalar("x", value, 0.0)


@pytest.mark.parametrize(
    "value, words",
    [
        (True, "x must be a real number, got bool"),
        (np.bool_(False), "x must be a real number, got bool"),
        ("0.1", "x must be a real scalar, got str"),
        (None, "x must be a real scalar, got NoneType"),
        ([0.1], "x must be a real scalar, got list"),
        (jnp.ones(2), r"x must be a real scalar, got shape \(2,\)"),
        (1j, "x must be a real scalar, got complex"),
        (jnp.array(1j), "x must be a real number, got dtype complex64"),
        (jnp.array(True), "x must be a real number, got dtype bool"),
    ],
)
def test_check_scalar_rejects_non_numbers(value, words):
    with pytest.raises(TypeError, match=words):
        check_scalar("x", value, 0.0)


def test_check_scalar_leaves_traced_values_to_the_result():
    # a traced -1 cannot be checked: it passes through unchanged, as a tracer
    out = traced(lambda v: check_scalar("tol", v, 0.0, strict=True), jnp.array(-1.0))
    assert not is_concrete(out)


def test_check_finite_tree():
    check_finite_tree("x", {"a": jnp.ones(2), "b": np.zeros(3, np.int32)})
    for bad in (jnp.array([1.0, jnp.nan]), np.array([np.inf]), {"a": [0.0, -np.inf]}):
        with pytest.raises(ValueError, match="x must be finite, got NaN or Inf"):
            check_finite_tree("x", bad)
    traced(lambda v: check_finite_tree("x", v), jnp.array([jnp.nan]))  # left to the result


def test_concrete_checks_run_on_constants_closed_over_inside_jit():
    """Inside a caller's jit, jnp on a constant is staged into a tracer; the concrete
    checks evaluate it now, so a closed-over NaN is still an error."""
    bad, good = jnp.array([1.0, jnp.nan]), jnp.array([1.0, 2.0])
    with pytest.raises(ValueError, match="x must be finite"):
        jax.jit(lambda: check_finite_tree("x", bad))()
    seen = []

    def body():
        seen.append(concrete_any(good, lambda v: v > 1.5))
        return good

    jax.jit(body)()
    assert seen == [True]
    assert concrete_any(np.zeros((0, 3)), lambda v: v == 0) is False  # empty: nothing to flag


def test_check_key():
    key = jax.random.key(0)
    assert check_key("key", key) is key
    legacy = jax.random.PRNGKey(0)
    assert check_key("key", legacy) is legacy
    traced(lambda k: check_key("key", k), key)  # a traced key is still a key
    for bad, error, words in [
        (0, TypeError, "key must be a PRNG key .*got int"),
        (np.uint32([0, 0]), TypeError, "key must be a PRNG key .*got ndarray"),
        (jnp.zeros(2), TypeError, r"key must be a PRNG key .*got float32 array of shape \(2,\)"),
        (jax.random.split(key), ValueError, r"key must be a single PRNG key.*\(2,\)"),
    ]:
        with pytest.raises(error, match=words):
            check_key("key", bad)


def test_check_bool():
    assert check_bool("flag", np.bool_(True)) is True
    for bad in (0, 1, "yes", None, jnp.array(True)):
        with pytest.raises(TypeError, match="flag must be a bool"):
            check_bool("flag", bad)


def test_check_callable_and_choice():
    assert check_callable("fn", jnp.sin) is jnp.sin
    with pytest.raises(TypeError, match="fn must be callable, got str"):
        check_callable("fn", "sin")
    assert check_choice("method", "a", ("a", "b")) == "a"
    for bad in ("c", 1, None):
        with pytest.raises(ValueError, match=r"method must be one of \['a', 'b'\], got"):
            check_choice("method", bad, ("a", "b"))


def test_nan_outside_is_the_traced_half_of_the_range_rule():
    """Concrete values pass unchanged (check_scalar checked them); a traced value out of
    range becomes NaN, one in range is kept, an int is made floating."""
    assert nan_outside(-1.0, 0.0) == -1.0
    for value, strict, keep in [(0.5, False, True), (0.0, False, True), (0.0, True, False),
                                (-1.0, False, False)]:  # fmt: skip
        out = jax.jit(lambda v, s=strict: nan_outside(v, 0.0, strict=s))(value)
        assert (float(out) == value) if keep else bool(jnp.isnan(out)), (value, strict, out)
    assert jnp.isnan(jax.jit(lambda v: nan_outside(v, 0.0))(jnp.int32(-2)))


def test_the_bool_rule_is_one_rule():
    """A bool is not a number, a point or a floating input, and a number is not a mask."""
    with pytest.raises(TypeError, match="real number, got bool"):
        check_scalar("x", np.bool_(True))
    with pytest.raises(TypeError, match="dtype bool"):
        real_array("x", np.ones(3, bool))
    with pytest.raises(
        TypeError, match="x must be floating-point arrays, got a leaf of dtype bool"
    ):
        floating_inputs("x", jnp.ones(3, bool))
    with pytest.raises(TypeError, match="mask must be a bool array, got float32"):
        as_mask("mask", jnp.ones(3), jnp.ones(3))
    points, key = np.eye(3, dtype=bool), jax.random.key(0)
    with pytest.raises(
        TypeError, match=r"x must be a real \(int or floating\) array, got dtype bool"
    ):
        em.kmeans(key, points, 2)
    with pytest.raises(
        TypeError, match=r"weights must be a real \(int or floating\) array, got dtype bool"
    ):
        em.kmeans(key, points.astype(float), 2, weights=np.ones(3, bool))
    with pytest.raises(
        TypeError, match=r"counts must be a real \(int or floating\) array, got dtype bool"
    ):
        em.plsa(key, points, 2)


INF = jnp.array([jnp.inf])


def test_floating_inputs_and_masks():
    with pytest.raises(TypeError, match="x must be floating-point arrays, got str"):
        floating_inputs("x", {"a": "text"})
    with pytest.raises(ValueError, match="x must have at least one entry"):
        floating_inputs("x", {"a": jnp.ones(0)})
    with pytest.raises(ValueError, match="x must be finite"):
        jax.jit(lambda: floating_inputs("x", INF))()  # closed over: checked
    mask = as_mask("mask", {"e": np.array([True, False])}, {"e": jnp.ones((2, 3))})
    assert mask["e"].shape == (2, 1) and mask["e"].dtype == bool  # broadcast along x's axes
    with pytest.raises(ValueError, match="prefix of x's shape"):
        as_mask("mask", jnp.ones(3, bool), jnp.ones((2, 3)))


def test_check_array_fun():
    assert check_array_fun("fun", jnp.sin, jnp.ones(3)).shape == (3,)
    with pytest.raises(TypeError, match="fun must return one array, got tuple"):
        check_array_fun("fun", lambda x: (x, x), jnp.ones(3))
    with pytest.raises(TypeError, match="fun must return floating values, got dtype int32"):
        check_array_fun("fun", lambda x: jnp.round(x).astype(jnp.int32), jnp.ones(3))
