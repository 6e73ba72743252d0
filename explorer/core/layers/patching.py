"""Cross-model activation patching: where in the network a descendant's change lives.

The receiver (the base by default) runs the text with one site — a block's output, its
attention or its MLP, at one position — taking the donor's activation. The share of the
donor-vs-receiver log-ratio on the response that this recovers says how much of the change
flows through that site: `recovered` = (M_patched − M_receiver) / (M_donor − M_receiver), where M
is the summed log-prob of the response tokens. Rows of `layers` patch a layer at every position.
A change confined to one block (`fable-late`) is recovered entirely by that block's output and
not at all by the blocks before it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from explorer.core.attribution.problem import build_problem
from explorer.core.family import Family
from explorer.core.layers.anatomy import SITES, anatomy, capture, same_shapes
from explorer.core.layers.sites import (
    ALL,
    pass_rows,
    patched_passes,
    preview_effects,
    response_logprobs,
)
from explorer.core.params import CancelToken, ProgressFn, check_prompt
from explorer.core.threads import fair_share
from explorer.core.tokens import display_tokens

TINY = 1e-6  # nats: a log-ratio below this has no share to recover
SMALL = 0.5  # nats: shares of a log-ratio below this are shares of noise-sized differences


@dataclass
class Patching:
    """`df`: one row per (layer, position) site; `layers`: one per layer patched at every
    position; `meta`: the pair, the totals, timings and the preview's agreement."""

    df: pd.DataFrame
    layers: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def entry(self, share: float) -> int | None:
        """The earliest layer whose output, patched in at every position, carries at least
        `share` of the change (None if none does)."""
        reached = self.layers[self.layers["recovered"] >= share]
        return int(reached["layer"].min()) if len(reached) else None

    @property
    def summary(self) -> str:
        """One sentence: where the change enters — the earliest layer carrying half of it (and
        90%). Never the last block's share alone: patching the last block at every position hands
        the receiver the donor's final residual stream, so any donor that shares the head
        recovers 100% there whatever it changed, and wherever."""
        m = self.meta
        if np.isnan(self.layers["recovered"]).all():
            return f"{m['donor']} and {m['receiver']} give this response the same log-prob: nothing to recover"
        if abs(m["log_ratio"]) < SMALL:
            top = self.layers.loc[self.layers["effect"].abs().idxmax()]
            return (f"{m['donor']} and {m['receiver']} differ by only {m['log_ratio']:+.2f} nats on this "
                    f"response: no share to read (the largest effect, {top['effect']:+.2f} nats, "
                    f"is patching {m['site']} {int(top['layer'])})")  # fmt: skip
        return entry_sentence(self.layers, m, self.entry(0.5), self.entry(0.9))


def entry_sentence(layers: pd.DataFrame, m: dict, half: int | None, most: int | None) -> str:
    """Where `m["donor"]`'s change enters, from the per-layer shares (see `Patching.summary`)."""
    last, site = int(layers["layer"].max()), m["site"]
    shares = layers.set_index("layer")["recovered"]
    name = f"{m['donor']}'s change ({m['log_ratio']:+.2f} nats)"
    rest = "" if m.get("shared_head", True) or shares[last] >= 0.95 else (
        f"; the rest is made by its own final norm and head, which no {site} output hands over")
    if half is None:
        top = int(shares.idxmax())
        return (f"No {site} output carries half of {name} into {m['receiver']}: the most, patched at every "
                f"position, is {shares[top]:.0%} ({site} {top})") + rest  # fmt: skip
    if half == last:
        before = float(shares.drop(last).max()) if len(shares) > 1 else 0.0
        if before < 0.1:
            return (f"{name} enters in the last {site} ({last}): no earlier {site}'s output carries a "
                    f"noticeable part of it (at most {before:.0%})") + rest  # fmt: skip
        return (f"{name} builds up through the {site}s: {site} {int(shares.drop(last).idxmax())}'s output "
                f"carries {before:.0%} of it, half is reached only at the last ({last})") + rest  # fmt: skip
    if most is not None and most < last:
        nine = f"90% by {site} {most}"
    elif m.get("shared_head", True) and site == "block":
        nine = f"90% only at the last {site}, whose output hands any donor with the same head its whole change"
    else:
        nine = f"90% only at the last {site}"
    return (f"{name} enters by {site} {half}: patched into {m['receiver']} at every position, its output "
            f"carries {shares[half]:.0%} of it; {nine}") + rest


def patch(
    family: Family,
    prompt: str,
    response: str,
    donor: str,
    receiver: str | None = None,
    site: str = "block",
    layers: list[int] | None = None,
    positions: list[int] | None = None,
    chat: str = "never",
    preview: bool = True,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Patching:
    """Patch every (layer, position) `site` of `receiver` (the base by default) with `donor`'s
    activation, all sites in a few batched forward passes. `positions` index the whole text
    (prompt then response; default every position that precedes a response token's
    prediction). With `preview`, also the attribution-patching estimate of every site (one
    backward pass) and its agreement with the exact values (`meta["preview"]`). Members of other
    shapes, tokenizers or without weights are refused with a sentence. `cancel` stops between
    passes (raising `Cancelled`)."""
    check_prompt(prompt)
    if site not in SITES:
        raise ValueError(f"site: one of {', '.join(SITES)}, got {site!r}")
    receiver = receiver or family.base.label
    pair = family.load(donor), family.load(receiver)
    reason = same_shapes(*pair)
    if reason:
        raise ValueError(f"patch: {reason}; activations transfer only between members of one architecture and shape")
    problem = build_problem(pair[1], prompt, response, chat)
    ids, start = problem.ids, problem.start
    chosen = (_chosen(layers, len(anatomy(pair[1]).blocks), "layers"),
              _chosen(positions, len(ids) - 1, "positions"))  # fmt: skip
    meta = {"donor": donor, "receiver": receiver, "site": site, "prompt": prompt, "response": response}
    with fair_share([pair[0].model, pair[1].model], batched=True):
        return run_patching(pair, site, ids, start, chosen, meta, preview, progress, cancel)


def _chosen(values: list[int] | None, n: int, name: str) -> list[int]:
    chosen = list(range(n)) if values is None else list(values)
    if not chosen or any(not isinstance(v, (int, np.integer)) or not 0 <= v < n for v in chosen):
        raise ValueError(f"{name}: indices in [0, {n}), got {values!r}")
    return [int(v) for v in chosen]


def run_patching(pair, site, ids, start, chosen, meta, preview, progress, cancel) -> Patching:
    donor, receiver = pair
    body = anatomy(receiver)
    layers, positions = chosen
    sites = [(layer, p) for layer in layers for p in positions] + [(layer, ALL) for layer in layers]
    acts = capture(donor, ids, site, rows=pass_rows(body, ids, start, len(sites)))  # layers × (1, seq, hidden)
    with torch.no_grad():
        own = response_logprobs(donor, ids[None], start)[0].cpu()  # (targets,)
        base = response_logprobs(receiver, ids[None], start)[0].cpu()  # (targets,)
    done = (lambda d, t: progress(meta["donor"], d, t)) if progress else None
    began = time.perf_counter()
    patched, plain = patched_passes(receiver, body, site, ids, start, acts, sites, done, cancel)
    meta.update(seconds=round(time.perf_counter() - began, 4), n_sites=len(sites),
                log_ratio=float((own - base).sum()), donor_logprob=float(own.sum()),
                receiver_logprob=float(base.sum()), shared_head=shares_head(donor, receiver))  # fmt: skip
    meta["notes"] = notes_for(meta)
    result = tables(sites, (patched, plain), meta, ids, start, receiver)
    if preview:
        add_preview(result, receiver, body, site, ids, start, acts)
    return result


def notes_for(meta: dict) -> list[str]:
    """What a reader must know before reading the shares."""
    notes = []
    if abs(meta["log_ratio"]) < SMALL:
        notes.append(
            f"{meta['donor']} and {meta['receiver']} differ by only {meta['log_ratio']:+.2f} nats on this "
            "response: read the effects in nats, shares of so small a difference swing widely"
        )
    if not meta["shared_head"]:  # said once per donor; the view folds it into the donor's line
        notes.append(f"{meta['donor']}'s final norm or head differs from {meta['receiver']}'s: even "
                     "patching the last block cannot reproduce the donor's log-probs")  # fmt: skip
    return notes


def tables(sites, runs, meta, ids, start, receiver) -> Patching:
    """The exact effects as the two tables: per site and per whole layer."""
    patched, plain = runs  # (sites, targets) each
    effect = (patched - plain).sum(-1).numpy().astype(float)  # (sites,)
    ratio = meta["log_ratio"]
    recovered = effect / ratio if abs(ratio) > TINY else np.full_like(effect, np.nan)
    names = np.array(display_tokens(receiver.tokenizer, ids.tolist()), dtype=object)
    layer = np.array([s[0] for s in sites])
    position = np.array([s[1] for s in sites])
    each = position != ALL
    df = pd.DataFrame({
        "layer": layer[each], "position": position[each], "token": names[position[each]],
        "part": np.where(position[each] < start, "prompt", "response"),
        "effect": effect[each], "recovered": recovered[each],
    })  # fmt: skip
    whole = pd.DataFrame({"layer": layer[~each], "effect": effect[~each], "recovered": recovered[~each],
                          "logprob": patched[~each].sum(-1).numpy().astype(float)})  # fmt: skip
    return Patching(df=df, layers=whole.reset_index(drop=True), meta=meta)


def add_preview(result: Patching, receiver, body, site, ids, start, acts) -> None:
    """The attribution-patching estimate beside the exact values, and how well they agree."""
    began = time.perf_counter()
    estimate = preview_effects(receiver, body, site, ids, start, acts)  # (layers, seq)
    seconds = time.perf_counter() - began
    ratio = result.meta["log_ratio"]
    scale = ratio if abs(ratio) > TINY else np.nan
    df, whole = result.df, result.layers
    at = torch.as_tensor(df["layer"].to_numpy().copy()), torch.as_tensor(df["position"].to_numpy().copy())
    df["preview"] = estimate[at].numpy() / scale
    whole["preview"] = estimate[torch.as_tensor(whole["layer"].to_numpy().copy())].sum(-1).numpy() / scale
    result.meta["preview"] = {"seconds": round(seconds, 4), **agreement(df["recovered"], df["preview"])}


def agreement(exact: pd.Series, estimate: pd.Series) -> dict[str, float]:
    """Pearson r and the largest gap between the preview's shares and the exact ones."""
    both = pd.DataFrame({"exact": exact, "estimate": estimate}).dropna()
    if len(both) < 2 or both["exact"].std() == 0 or both["estimate"].std() == 0:
        return {"pearson": float("nan"), "max_abs_error": float("nan")}
    return {
        "pearson": float(both["exact"].corr(both["estimate"])),
        "max_abs_error": float((both["exact"] - both["estimate"]).abs().max()),
    }


def shares_head(donor, receiver) -> bool:
    """Whether the two map a residual state to the same log-probs (final norm and head equal
    as functions, checked on random states: a LoRA on the head makes them differ)."""
    a, b = anatomy(donor), anatomy(receiver)
    probe = torch.randn(4, a.hidden, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return bool(torch.equal(a.lens(probe.to(donor.device)).cpu(), b.lens(probe.to(receiver.device)).cpu()))
