"""Inside the family: where in the network each adaptation acts.

`layer_lens` (what each block's residual stream predicts, and how far a descendant's lens is from
the base's), `patch` (cross-model activation patching, batched, with an attribution-patching
preview) and `weight_diff` (how much each module's weights moved). All need weights: served
members get a sentence.
"""

from explorer.core.layers.anatomy import SITES, Anatomy, anatomy
from explorer.core.layers.lens import layer_lens
from explorer.core.layers.patching import Patching, patch
from explorer.core.layers.weights import weight_diff

__all__ = ["SITES", "Anatomy", "Patching", "anatomy", "layer_lens", "patch", "weight_diff"]
