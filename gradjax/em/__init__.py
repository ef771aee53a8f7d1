"""EM as lax.scan: K-Means (hard and soft) and pLSA."""

from ._kmeans import KMeansResult as KMeansResult
from ._kmeans import assign as assign
from ._kmeans import kmeans as kmeans
from ._kmeans import kmeans_plusplus as kmeans_plusplus
from ._plsa import PLSAResult as PLSAResult
from ._plsa import plsa as plsa
from ._plsa import plsa_fold_in as plsa_fold_in
from ._plsa import plsa_log_likelihood as plsa_log_likelihood
from ._soft_kmeans import soft_kmeans as soft_kmeans
