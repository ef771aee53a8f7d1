"""EM as lax.scan: K-Means (hard, soft, spherical and mini-batch) and pLSA.

Scale, from one device to many hosts, with the same functions:

- **One host, many devices.** Put the rows on a mesh and call the function under
  ``jax.jit``: ``x = jax.device_put(x, NamedSharding(mesh, P("data", None)))``.
  ``kmeans``, ``plsa`` and ``minibatch_kmeans(...).update`` write their statistics
  as global reductions, which XLA turns into cross-device sums.
- **More data than memory.** Stream host batches, e.g. slices of a ``np.memmap``,
  through ``fit_minibatch_kmeans(key, batches, k)`` (a progress bar if tqdm is
  installed, one device call per group of batches, the next group transferred while
  one computes), or
  drive ``minibatch_kmeans(k).update`` yourself.
- **Many hosts.** JAX's multi-controller runtime: start the same script on every
  host, each loading only its own rows::

      jax.distributed.initialize("host0:1234", num_processes=H, process_id=h)
      # on CPU hosts, first: jax.config.update("jax_cpu_collectives_implementation", "gloo")
      mesh = Mesh(np.array(jax.devices()), ("data",))
      x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data", None)), my_rows)
      fit = jax.jit(lambda x: em.kmeans(key, x, k, algorithm="lloyd"))(x)

  Replicated results (centroids, topics) are on every host; row-sharded ones
  (labels, ``p(z|d)``) hold each host's rows (``multihost_utils.process_allgather``
  collects them). tests/em/test_multiprocess.py runs this with two processes on
  one machine and checks it equals one process.
"""

from ._assign import assign as assign
from ._kmeans import KMeansResult as KMeansResult
from ._kmeans import kmeans as kmeans
from ._minibatch import MiniBatchKMeans as MiniBatchKMeans
from ._minibatch import MiniBatchKMeansState as MiniBatchKMeansState
from ._minibatch import minibatch_kmeans as minibatch_kmeans
from ._plsa import PLSAFoldInResult as PLSAFoldInResult
from ._plsa import PLSAResult as PLSAResult
from ._plsa import plsa as plsa
from ._plsa import plsa_fold_in as plsa_fold_in
from ._plsa import plsa_log_likelihood as plsa_log_likelihood
from ._seeding import kmeans_plusplus as kmeans_plusplus
from ._soft_kmeans import soft_kmeans as soft_kmeans
from ._stream import fit_minibatch_kmeans as fit_minibatch_kmeans

__all__ = [
    "KMeansResult",
    "MiniBatchKMeans",
    "MiniBatchKMeansState",
    "PLSAFoldInResult",
    "PLSAResult",
    "assign",
    "fit_minibatch_kmeans",
    "kmeans",
    "kmeans_plusplus",
    "minibatch_kmeans",
    "plsa",
    "plsa_fold_in",
    "plsa_log_likelihood",
    "soft_kmeans",
]
