"""Bad input to every public function of gradjax.optim: the error names the argument.

Each row is (call, exception type, regex the message must match). Options are checked
when the transformation is built; updates and batches when they are first seen.
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradjax import optim

CLIPPING = [
    optim.clip_by_global_norm,
    optim.soft_clip_by_global_norm,
    optim.clip_by_leaf_norm,
    optim.soft_clip_by_leaf_norm,
]
BAD_MAX_NORMS = [
    (0.0, ValueError),
    (-1.0, ValueError),
    (np.float32(-1), ValueError),
    (jnp.array(-1.0), ValueError),
    (float("inf"), ValueError),
    (float("nan"), ValueError),
    (np.float64("nan"), ValueError),
    ("1", TypeError),
    (None, TypeError),
    ([1.0, 2.0], TypeError),
    (True, TypeError),
    (1 + 2j, TypeError),
    (jnp.ones(2), TypeError),
]
INT_UPDATES = {"a": jnp.ones(2), "b": jnp.arange(3)}  # an int32 leaf would be truncated
UPDATES = {"a": jnp.ones(2), "b": {"c": jnp.ones(3)}}


def update(transform, updates):
    return transform.update(updates, optax.EmptyState())


def loss(params, batch):
    return jnp.mean((batch[0] @ params - batch[1]) ** 2)


BATCH = (jnp.ones((8, 2)), jnp.ones(8))

CASES = [
    *[
        pytest.param(lambda f=f, m=m: f(m), e, "max_norm", id=f"{f.__name__}-{m!r}")
        for f in CLIPPING
        for m, e in BAD_MAX_NORMS
    ],
    *[
        pytest.param(
            lambda f=f: update(f(1.0), INT_UPDATES),
            TypeError,
            r"updates\['b'\].*int32",
            id=f"{f.__name__}-int-updates",
        )
        for f in CLIPPING
    ],
    (
        lambda: update(optim.clip_by_global_norm(1.0), {"a": "x"}),
        TypeError,
        r"updates\['a'\] must be an array",
    ),
    # scale_by_multipliers
    (lambda: optim.scale_by_multipliers({"a[": 0.1}), ValueError, "multipliers.*regular"),
    (lambda: optim.scale_by_multipliers({"a": "0.1"}), TypeError, r"multipliers\['a'\]"),
    (lambda: optim.scale_by_multipliers({"a": None}), TypeError, r"multipliers\['a'\]"),
    (lambda: optim.scale_by_multipliers({"a": float("nan")}), ValueError, "multipliers.*nan"),
    (lambda: optim.scale_by_multipliers({"a": np.float32("nan")}), ValueError, "finite.*nan"),
    (lambda: optim.scale_by_multipliers({"a": jnp.inf}), ValueError, "multipliers.*finite"),
    (lambda: optim.scale_by_multipliers({"a": jnp.ones(2)}), TypeError, "multipliers.*scalar"),
    (lambda: optim.scale_by_multipliers({"a": 1j}), TypeError, "multipliers"),
    (
        lambda: optim.scale_by_multipliers({"a": "x", "b": {"c": 1.0}}),
        TypeError,
        r"multipliers\['a'\]",
    ),
    (
        lambda: optim.scale_by_multipliers({"a": jnp.ones(2), "b": {"c": 1.0}}),
        TypeError,
        r"multipliers\['a'\].*scalar",
    ),
    (lambda: optim.scale_by_multipliers([]), ValueError, "multipliers"),
    (lambda: optim.scale_by_multipliers({}), ValueError, "multipliers"),
    (lambda: optim.scale_by_multipliers("enc"), TypeError, "multipliers"),
    (
        lambda: update(optim.scale_by_multipliers({"a": 0.5, "x": {"c": 1.0}}), UPDATES),
        ValueError,
        "multipliers.*structure",
    ),
    (
        lambda: optim.scale_by_multipliers({"a": 0.5, "x": {"c": 1.0}}).init(UPDATES),
        ValueError,
        "multipliers.*structure",
    ),
    (
        lambda: optim.scale_by_multipliers({"zzz": 0.5}).init(UPDATES),
        ValueError,
        r"\['zzz'\].*no leaf.*allow_unused",
    ),
    (
        lambda: update(optim.scale_by_multipliers(lambda path, leaf: jnp.ones(2)), UPDATES),
        TypeError,
        r"multipliers\('a'.*scalar",
    ),
    (
        lambda: update(optim.scale_by_multipliers(lambda path, leaf: "1"), UPDATES),
        TypeError,
        r"multipliers\('a'",
    ),
    (
        lambda: update(optim.scale_by_multipliers(lambda path, leaf: np.float32(-np.nan)), UPDATES),
        ValueError,
        r"multipliers\('a'.*finite.*nan",
    ),
    (lambda: optim.scale_by_multipliers({"a": 1.0}, allow_unused=1), TypeError, "allow_unused"),
    (
        lambda: update(optim.scale_by_multipliers({"b": 0.5}), INT_UPDATES),
        TypeError,
        r"updates\['b'\]",
    ),
    # map_gradients
    (lambda: optim.map_gradients(3.0), TypeError, "fn"),
    (
        lambda: update(optim.map_gradients(lambda path, g: g.sum()), UPDATES),
        ValueError,
        r"fn.*'a'.*shape",
    ),
    (lambda: update(optim.map_gradients(lambda path, g: None), UPDATES), TypeError, "fn.*'a'"),
    (
        lambda: update(optim.map_gradients(lambda path, g: g * 1j), UPDATES),
        TypeError,
        "fn.*complex",
    ),
    (lambda: update(optim.map_gradients(lambda p, g: g), INT_UPDATES), TypeError, "updates"),
    # accumulate
    (lambda: optim.accumulate(optax.sgd(0.1), 0), ValueError, "every_k"),
    (lambda: optim.accumulate(optax.sgd(0.1), np.int64(0)), ValueError, "every_k"),
    (lambda: optim.accumulate(optax.sgd(0.1), 2.0), TypeError, "every_k"),
    (lambda: optim.accumulate(optax.sgd(0.1), "2"), TypeError, "every_k"),
    (lambda: optim.accumulate(optax.sgd(0.1), None), TypeError, "every_k"),
    (lambda: optim.accumulate(optax.sgd(0.1), True), TypeError, "every_k"),
    (lambda: optim.accumulate(lambda g: g, 2), TypeError, "optimizer"),
    (
        lambda: (acc := optim.accumulate(optax.sgd(0.1), 2)).update(
            INT_UPDATES, acc.init(INT_UPDATES)
        ),
        TypeError,
        r"updates\['b'\]",
    ),
    # microbatched_value_and_grad
    (lambda: optim.microbatched_value_and_grad("loss", 2), TypeError, "loss_fn"),
    (lambda: optim.microbatched_value_and_grad(loss, 0), ValueError, "num_microbatches"),
    (lambda: optim.microbatched_value_and_grad(loss, np.int32(0)), ValueError, "num_microbatches"),
    (lambda: optim.microbatched_value_and_grad(loss, 2.0), TypeError, "num_microbatches"),
    (lambda: optim.microbatched_value_and_grad(loss, None), TypeError, "num_microbatches"),
    (lambda: optim.microbatched_value_and_grad(loss, 2, has_aux="yes"), TypeError, "has_aux"),
    (
        lambda: optim.microbatched_value_and_grad(loss, 3)(jnp.ones(2), BATCH),
        ValueError,
        r"batch.*8.*num_microbatches=3",
    ),
    (
        lambda: optim.microbatched_value_and_grad(loss, 2)(jnp.ones(2), (BATCH[0], BATCH[1][:4])),
        ValueError,
        "batch.*leading",
    ),
    (
        lambda: optim.microbatched_value_and_grad(loss, 2)(jnp.ones(2), (BATCH[0], 1.0)),
        ValueError,
        "batch.*leading",
    ),
    (lambda: optim.microbatched_value_and_grad(loss, 2)(jnp.ones(2), ()), ValueError, "batch"),
]


@pytest.mark.parametrize(("call", "error", "match"), CASES)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_table_covers_every_public_function():
    names = {"accumulate", "microbatched_value_and_grad", "map_gradients", "scale_by_multipliers"}
    names |= {f.__name__ for f in CLIPPING}
    assert names == set(optim.__all__)
