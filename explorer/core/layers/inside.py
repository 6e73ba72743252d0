"""Everything the Layers view shows for one response, and what it costs before it runs.

`inside` runs the layer lens on every chosen model, patches each descendant that has the base's
shapes into the base (the descendant as donor: how much of its change each site carries), and
measures where the weights moved and the shape of each change (its singular values). Members that cannot take part are named with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from explorer.core.attribution.problem import build_problem
from explorer.core.errors import Cancelled
from explorer.core.estimate import Counter, Estimate, activation_bytes, pass_timing
from explorer.core.family import Family
from explorer.core.layers.anatomy import anatomy, same_shapes
from explorer.core.layers.lens import layer_lens
from explorer.core.layers.patching import Patching, patch
from explorer.core.layers.sites import pass_rows
from explorer.core.layers.spectra import spectra_seconds, weight_spectra
from explorer.core.layers.weights import weight_diff
from explorer.core.params import CancelToken, ProgressFn, check_cancel

BACKWARD = 1.6  # the preview's backward pass, in forwards of the same text


@dataclass
class Inside:
    """The lens of every model, the patching of each descendant into the base, the weight
    diff, and sentences for what was left out (each patching's own caveats are in its meta)."""

    prompt: str
    response: str
    site: str
    lens: pd.DataFrame
    patches: dict[str, Patching] = field(default_factory=dict)
    weights: pd.DataFrame | None = None
    spectra: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def patch_frame(self) -> pd.DataFrame:
        """Every donor's site effects in one table (a `model` column: the donor)."""
        frames = [p.df.assign(model=label) for label, p in self.patches.items()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def layer_frame(self) -> pd.DataFrame:
        """Every donor's whole-layer rows, with the share it recovers and its log-ratio."""
        frames = [p.layers.assign(model=label, log_ratio=p.meta["log_ratio"]) for label, p in self.patches.items()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def donors(family: Family, models: list[str]) -> tuple[list[str], list[str]]:
    """The descendants that can be patched into the base, and sentences for the others."""
    base = family.load(family.base.label)
    able, notes = [], []
    for label in models:
        if label == family.base.label:
            continue
        reason = same_shapes(family.load(label), base)
        if reason:
            notes.append(f"No patching for {label}: {reason}")
        else:
            able.append(label)
    return able, notes


def inside(
    family: Family, prompt: str, response: str, models: list[str] | None = None, site: str = "block",
    chat: str = "never", progress: ProgressFn | None = None, cancel: CancelToken | None = None,
) -> Inside:  # fmt: skip
    """The Layers view's tables for `response` to `prompt` (see the module docstring)."""
    labels = models or family.labels
    for label in labels:
        anatomy(family.load(label))  # a served member: its sentence before any work
    lens = layer_lens(family, prompt, response, models=labels, chat=chat, cancel=cancel)
    if progress:
        progress("layer lens", 1, 1)
    able, notes = donors(family, labels)
    result = Inside(prompt, response, site, lens, notes=list(lens.attrs.get("notes", [])) + notes)
    if able:
        result.weights = weight_diff(family, models=able)
    try:
        result.spectra = weight_spectra(family, models=able, cancel=cancel) if able else None
        for label in able:
            check_cancel(cancel)
            result.patches[label] = patch(family, prompt, response, donor=label, site=site, chat=chat,
                                          progress=progress, cancel=cancel)  # fmt: skip
    except Cancelled as err:  # keep the lens, the weights and the donors patched so far
        raise Cancelled(str(err), partial=result) from None
    return result


def inside_estimate(family: Family, prompt: str, response: str, models: list[str], chat: str) -> Estimate:
    """Seconds and memory of `inside`: lens passes for every model, patched passes per donor."""
    base = family.load(family.base.label)
    able, _ = donors(family, models)
    problem = build_problem(base, prompt, response, chat)
    seq, start = len(problem.ids), problem.start
    body = anatomy(base)
    sites = len(body.blocks) * seq
    rows = pass_rows(body, problem.ids, start, sites)
    targets = seq - start
    total, passes = 0.0, 0.0
    for label in models:
        member = family.load(label)
        c = Counter()
        c.forward(1, seq)  # the lens: one pass, then the head at every block and target
        c.heads += len(anatomy(member).blocks) * targets
        if label in able:
            c.forward(rows, seq)  # the donor's capture
            c.forward(rows, seq, repeat=math.ceil(sites / (rows - 1)), heads=targets + 1)  # patched passes
            c.forward(1, seq, repeat=1 + BACKWARD, heads=targets + 1)  # the preview
        total += c.seconds(pass_timing(member, batched=True))
        total += spectra_seconds(base, member) if label in able else 0.0
        passes += c.token_passes
    memory = activation_bytes(base, rows, seq)  # one batch of patched passes (the largest)
    detail = f"the lens of {len(models)} models, {sites} sites patched and the weight spectra of each of {len(able)} descendants"
    return Estimate("layers", total, passes, memory, detail)
