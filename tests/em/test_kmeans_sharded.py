"""K-Means (euclidean and cosine) and mini-batch K-Means on points sharded over 8 (forced CPU)
devices equal the single-device run."""

import subprocess
import sys
import textwrap

from _compile import subprocess_env

SCRIPT = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from gradjax import em
    from gradjax.datasets import make_blobs

    assert len(jax.devices()) == 8
    x, _ = make_blobs(2048, 6, 4, seed=0)
    w = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, 2048), jnp.float32)
    mesh = Mesh(np.array(jax.devices()), ("data",))
    x_sharded = jax.device_put(x, NamedSharding(mesh, P("data", None)))
    w_sharded = jax.device_put(w, NamedSharding(mesh, P("data")))

    # block_size=256: 8 row blocks, each spread over the 8 devices
    fit = jax.jit(lambda k, x, w: em.kmeans(k, x, 6, n_init=2, weights=w, block_size=256))
    one = fit(jax.random.key(0), x, w)
    compiled = fit.lower(jax.random.key(0), x_sharded, w_sharded).compile()
    many = compiled(jax.random.key(0), x_sharded, w_sharded)
    assert len(one.centroids.devices()) == 1
    assert many.labels.sharding.spec == P("data"), many.labels.sharding
    np.testing.assert_allclose(many.centroids, one.centroids, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(many.labels, one.labels)
    np.testing.assert_allclose(many.inertia, one.inertia, rtol=1e-5)
    np.testing.assert_allclose(many.inertia_trace, one.inertia_trace, rtol=1e-5)
    assert int(many.num_steps) == int(one.num_steps)
    # the per-cluster sums are reduced across devices, not computed on one
    assert "all-reduce" in compiled.as_text()

    # spherical K-Means: the same comparison, one restart, the same sharded points
    cosine = jax.jit(lambda k, x, w: em.kmeans(k, x, 6, metric="cosine", weights=w, block_size=256))
    one = cosine(jax.random.key(1), x, w)
    many = cosine(jax.random.key(1), x_sharded, w_sharded)
    assert many.labels.sharding.spec == P("data"), many.labels.sharding
    np.testing.assert_allclose(many.centroids, one.centroids, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(many.centroids, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(many.labels, one.labels)
    np.testing.assert_allclose(many.inertia_trace, one.inertia_trace, rtol=1e-5)
    assert int(many.num_steps) == int(one.num_steps)

    # mini-batch K-Means: two updates (the second may reassign) on sharded batches
    km = em.minibatch_kmeans(6, init=x[:6], reassignment_ratio=0.5)
    update = jax.jit(km.update)
    halves = [x[:1024], x[1024:]]
    single = sharded = km.init(jax.random.key(0), x)
    for half in halves:
        single = update(single, half)
        sharded = update(sharded, jax.device_put(half, NamedSharding(mesh, P("data", None))))
    np.testing.assert_allclose(sharded.centroids, single.centroids, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sharded.counts, single.counts, rtol=1e-6)
    half = jax.device_put(halves[0], NamedSharding(mesh, P("data", None)))
    assert "all-reduce" in update.lower(single, half).compile().as_text()
    print("ok")
    """
)


def test_sharded_equals_single_device():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=subprocess_env(8),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")
