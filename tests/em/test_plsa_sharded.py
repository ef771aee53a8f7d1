"""pLSA on counts sharded over 8 (forced CPU) devices equals the single-device fit."""

import subprocess
import sys
import textwrap

from _compile import subprocess_env

SCRIPT = textwrap.dedent(
    """
    import chex
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from gradjax import em

    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)
    topics = rng.dirichlet(np.full(50, 0.2), 4)
    mixtures = rng.dirichlet(np.full(4, 0.3), 64)
    p_w_given_d = mixtures @ topics
    counts = rng.multinomial(80, p_w_given_d / p_w_given_d.sum(1, keepdims=True))
    counts[5] = 0  # an empty document on one shard

    with jax.enable_x64(True):
        counts = jnp.asarray(counts, jnp.float64)
        fit_fn = jax.jit(lambda c: em.plsa(jax.random.key(1), c, 4, num_steps=30, tol=0.0))
        single = fit_fn(jax.device_put(counts, jax.devices()[0]))

        mesh = Mesh(np.array(jax.devices()), ("data",))
        sharded_counts = jax.device_put(counts, NamedSharding(mesh, P("data", None)))
        sharded = fit_fn(sharded_counts)

        assert len(sharded_counts.sharding.device_set) == 8
        assert not sharded.p_z_given_d.sharding.is_fully_replicated, sharded.p_z_given_d.sharding
        chex.assert_trees_all_close(sharded, single, rtol=1e-9, atol=1e-12)
        assert np.all(np.diff(np.asarray(sharded.log_likelihood_trace)) >= -1e-9)

        fold = jax.jit(lambda c, t: em.plsa_fold_in(jax.random.key(2), c, t, num_steps=20, tol=0.0))
        np.testing.assert_allclose(
            np.asarray(fold(sharded_counts, sharded.p_w_given_z).p_z_given_d),
            np.asarray(fold(counts, single.p_w_given_z).p_z_given_d),
            rtol=1e-9,
            atol=1e-12,
        )
    print("OK")
    """
)


def test_sharded_over_documents_equals_single_device():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=subprocess_env(8),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("OK")
