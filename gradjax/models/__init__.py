"""Small flax models used by the tour, the notebooks and the benchmarks (needs flax)."""

from ._fit import FitResult as FitResult
from ._fit import fit as fit
from ._gan import DCGANCritic as DCGANCritic
from ._gan import DCGANGenerator as DCGANGenerator
from ._gan import MLPCritic as MLPCritic
from ._gan import MLPGenerator as MLPGenerator
from ._mlp import MLP as MLP
from ._text import CharCNN as CharCNN
from ._transformer import CausalLM as CausalLM
from ._transformer import TransformerClassifier as TransformerClassifier

__all__ = [
    "MLP",
    "CausalLM",
    "CharCNN",
    "DCGANCritic",
    "DCGANGenerator",
    "FitResult",
    "MLPCritic",
    "MLPGenerator",
    "TransformerClassifier",
    "fit",
]
