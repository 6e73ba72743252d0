"""Inside the family: where in the network each adaptation acts.

`layer_lens` (what each block's residual stream predicts, and how far a descendant's lens is from
the base's), `patch` (cross-model activation patching, batched, with an attribution-patching
preview; its summary names the block where the change enters), `weight_diff` (how much each
module's weights moved), `weight_spectra` (the singular values of each change) and
`activation_diff` (what each adaptation adds to the residual stream on neutral text, read as
tokens; `explorer.core.steering.steer` adds it back to the base). All need weights: served
members get a sentence.
"""

from explorer.core.layers.anatomy import SITES, Anatomy, anatomy
from explorer.core.layers.diffs import ActivationDiff, activation_diff
from explorer.core.layers.lens import layer_lens
from explorer.core.layers.patching import Patching, patch
from explorer.core.layers.spectra import weight_spectra
from explorer.core.layers.weights import weight_diff

__all__ = ["SITES", "ActivationDiff", "Anatomy", "Patching", "activation_diff", "anatomy", "layer_lens", "patch",
           "weight_diff", "weight_spectra"]  # fmt: skip
