"""optax gradient transformations: both clipping forms, layer-wise learning rates,
path-aware gradient maps, gradient accumulation and in-step micro-batching.

Every transformation is an ``optax.GradientTransformation`` factory that drops into
``optax.chain``. Leaves are addressed by their "/"-joined key path
(``"params/Dense_0/kernel"`` for flax parameters).
"""

from ._accumulate import accumulate as accumulate
from ._accumulate import microbatched_value_and_grad as microbatched_value_and_grad
from ._clipping import clip_by_global_norm as clip_by_global_norm
from ._clipping import clip_by_leaf_norm as clip_by_leaf_norm
from ._clipping import soft_clip_by_global_norm as soft_clip_by_global_norm
from ._clipping import soft_clip_by_leaf_norm as soft_clip_by_leaf_norm
from ._multipliers import map_gradients as map_gradients
from ._multipliers import scale_by_multipliers as scale_by_multipliers

__all__ = [
    "accumulate",
    "clip_by_global_norm",
    "clip_by_leaf_norm",
    "map_gradients",
    "microbatched_value_and_grad",
    "scale_by_multipliers",
    "soft_clip_by_global_norm",
    "soft_clip_by_leaf_norm",
]
