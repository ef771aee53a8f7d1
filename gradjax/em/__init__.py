"""EM as lax.scan: K-Means (hard, soft and mini-batch) and pLSA."""

from ._assign import assign as assign
from ._kmeans import KMeansResult as KMeansResult
from ._kmeans import kmeans as kmeans
from ._minibatch import MiniBatchKMeans as MiniBatchKMeans
from ._minibatch import MiniBatchKMeansState as MiniBatchKMeansState
from ._minibatch import minibatch_kmeans as minibatch_kmeans
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
