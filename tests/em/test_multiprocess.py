"""Two processes on localhost (JAX's multi-controller runtime, gloo CPU collectives, two
CPU devices each): kmeans, plsa and a minibatch_kmeans pass equal one process.

Each process builds only its own rows and makes the global arrays with
``jax.make_array_from_process_local_data``; the same jitted code then runs on all
four devices. The reference is this (single-device) process on the concatenated rows.
"""

import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from _compile import subprocess_env

COMMON = textwrap.dedent(
    """
    import jax
    import numpy as np

    from gradjax import em


    def shard(pid):
        '''Process ``pid``'s rows: 256 points and 32 documents (shared centres, topics).'''
        rng = np.random.default_rng(0)
        centres, topics = rng.normal(0, 5, (4, 3)), rng.dirichlet(np.full(40, 0.2), 3)
        rng = np.random.default_rng(100 + pid)
        x = centres[rng.integers(4, size=256)] + rng.normal(size=(256, 3))
        p = rng.dirichlet(np.full(3, 0.3), 32) @ topics
        counts = rng.multinomial(60, p / p.sum(1, keepdims=True))
        return x.astype(np.float32), counts.astype(np.float32)


    def run(x, counts, batches, gather):
        '''The three fits under jit; ``gather`` brings a (sharded) result to the host.'''
        start = np.random.default_rng(1).normal(0, 5, (4, 3)).astype(np.float32)
        km = jax.jit(lambda x: em.kmeans(jax.random.key(0), x, 4, init=start, num_steps=10))
        fit = km(x)
        topics = jax.jit(lambda c: em.plsa(jax.random.key(1), c, 3, num_steps=20, tol=0.0))
        lsa = topics(counts)
        mb = em.minibatch_kmeans(4, init=np.asarray(gather(fit.centroids)) + 0.5)
        update = jax.jit(mb.update)
        state = mb.init(jax.random.key(2), np.zeros((4, 3), np.float32))
        for batch in batches:
            state = update(state, batch)
        out = {"centroids": fit.centroids, "labels": fit.labels, "inertia": fit.inertia,
               "p_w_given_z": lsa.p_w_given_z, "p_z_given_d": lsa.p_z_given_d,
               "log_likelihood": lsa.log_likelihood, "mb_centroids": state.centroids,
               "mb_counts": state.counts}
        return {name: np.asarray(gather(value)) for name, value in out.items()}
    """
)

WORKER = COMMON + textwrap.dedent(
    """
    import sys

    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    port, pid, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except Exception as error:  # an older jaxlib without gloo
        print("NO_GLOO", error)
        sys.exit(77)
    jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid,
                               initialization_timeout=60)
    assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
    assert jax.local_device_count() == 2
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rows = NamedSharding(mesh, P("data", None))
    x_local, counts_local = shard(pid)  # this process's rows only
    x = jax.make_array_from_process_local_data(rows, x_local)
    counts = jax.make_array_from_process_local_data(rows, counts_local)
    assert x.shape == (512, 3) and not x.is_fully_addressable
    batches = [jax.make_array_from_process_local_data(rows, x_local[i : i + 64])
               for i in range(0, 256, 64)]
    gather = lambda a: multihost_utils.process_allgather(a, tiled=True)
    result = run(x, counts, batches, gather)
    if pid == 0:
        np.savez(out, **result)
    print("OK")
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "result.npz"
    env = subprocess_env(2)
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(port), str(pid), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pid in (0, 1)
    ]
    try:
        logs = [proc.communicate(timeout=240)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    if any(proc.returncode == 77 for proc in procs):
        pytest.skip("this jaxlib has no gloo CPU collectives")
    assert all(proc.returncode == 0 for proc in procs), "\n".join(log[-3000:] for log in logs)

    namespace = {}
    exec(COMMON, namespace)  # the same functions, one process, one device
    shards = [namespace["shard"](pid) for pid in (0, 1)]
    x = np.concatenate([s[0] for s in shards])
    counts = np.concatenate([s[1] for s in shards])
    batches = [np.concatenate([s[0][i : i + 64] for s in shards]) for i in range(0, 256, 64)]
    reference = namespace["run"](x, counts, batches, lambda a: a)
    with np.load(out) as result:
        for name, expected in reference.items():
            if name == "labels":
                np.testing.assert_array_equal(result[name], expected)
            else:
                np.testing.assert_allclose(result[name], expected, rtol=1e-5, atol=1e-6,
                                           err_msg=name)  # fmt: skip
