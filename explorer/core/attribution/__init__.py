"""Attribution across the family: which source tokens drive each response token, per model.

Speed is the point where peers are slow: they attribute one target token at a time. Here
- gradient methods take one forward pass and a batched vector–Jacobian product over all targets
  (`gradients`);
- integrated gradients take, by default, a path that moves one token at a time, whose every leg
  is exact in batched forward passes (`sequential`); on the straight path they evaluate all
  interpolation points in one batch (Gauss–Legendre nodes for a fixed step count), and an
  adaptive mode refines each target with nested Clenshaw–Curtis rules until its attributions
  are complete and have stopped changing (`ig`);
- occlusion runs every occluded sequence in one batched teacher-forced pass (`occlusion`).

Methods (`methods`) and targets — what is explained (`targets`) — are registries: a new one
is one function registered by name. `faithfulness` says which method's ranking explains the
model (deletion and insertion curves); `agreement` whether a descendant differs from the base
beyond the method's noise.
"""

from explorer.core.attribution.api import attribute, attribute_samples
from explorer.core.attribution.methods import list_methods, register_method
from explorer.core.attribution.problem import MethodResult, Problem
from explorer.core.attribution.result import Attribution
from explorer.core.attribution.targets import list_targets, register_target

__all__ = [
    "Attribution", "MethodResult", "Problem", "attribute", "attribute_samples", "list_methods",
    "list_targets", "register_method", "register_target",
]  # fmt: skip
