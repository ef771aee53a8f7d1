"""optax gradient transformations: both clipping forms, layer-wise learning rates,
path-aware gradient maps, gradient accumulation and in-step micro-batching, and
DP-SGD (per-example clipping in both forms, ghost norms, noise, accounting).

Every transformation is an ``optax.GradientTransformation`` factory that drops into
``optax.chain``. Leaves are addressed by their "/"-joined key path
(``"params/Dense_0/kernel"`` for flax parameters).
"""

from ._accumulate import MicrobatchInfo as MicrobatchInfo
from ._accumulate import SkipState as SkipState
from ._accumulate import accumulate as accumulate
from ._accumulate import microbatched_value_and_grad as microbatched_value_and_grad
from ._clipping import ClipState as ClipState
from ._clipping import clip_by_global_norm as clip_by_global_norm
from ._clipping import clip_by_leaf_norm as clip_by_leaf_norm
from ._clipping import soft_clip_by_global_norm as soft_clip_by_global_norm
from ._clipping import soft_clip_by_leaf_norm as soft_clip_by_leaf_norm
from ._multipliers import map_gradients as map_gradients
from ._multipliers import scale_by_multipliers as scale_by_multipliers
from ._per_example import PerExampleClipInfo as PerExampleClipInfo
from ._per_example import per_example_clipped_grad as per_example_clipped_grad
from ._privacy import DPAggregateState as DPAggregateState
from ._privacy import dp_aggregate as dp_aggregate
from ._privacy import dp_epsilon as dp_epsilon

__all__ = [
    "ClipState",
    "DPAggregateState",
    "MicrobatchInfo",
    "PerExampleClipInfo",
    "SkipState",
    "accumulate",
    "clip_by_global_norm",
    "clip_by_leaf_norm",
    "dp_aggregate",
    "dp_epsilon",
    "map_gradients",
    "microbatched_value_and_grad",
    "per_example_clipped_grad",
    "scale_by_multipliers",
    "soft_clip_by_global_norm",
    "soft_clip_by_leaf_norm",
]
