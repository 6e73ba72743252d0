"""The layer lens across a family: what each block's residual stream already predicts.

For every model, block and response token, the logit lens (the model's own final norm and head
applied to the residual stream after that block) gives a distribution over the next token: the
log-prob it puts on the response token shows where in depth the answer forms, and the KL of a
descendant's lens from the base's at the same block and position shows where the two models'
computations part. A change confined to one block (`fable-late`) leaves the KL at exactly 0
before it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from explorer.core import vocab
from explorer.core.attribution.problem import build_problem
from explorer.core.family import Family
from explorer.core.layers.anatomy import Anatomy, anatomy, capture
from explorer.core.member import Member
from explorer.core.params import CancelToken, ProgressFn, check_cancel, check_prompt
from explorer.core.threads import fair_share
from explorer.core.tokens import display_tokens

COLUMNS = ["model", "layer", "position", "token", "logprob", "top", "kl_to_base"]


def layer_lens(
    family: Family,
    prompt: str,
    response: str,
    models: list[str] | None = None,
    chat: str = "never",
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> pd.DataFrame:
    """One row per model, block (`layer`, 0 = the first block's output; the last equals the
    model's own prediction) and response token (`position`, 0-based in the response): the
    lens's log-prob of that token, its top token, and `kl_to_base` = KL(model's lens ‖ base's
    lens) in nats (0 for the base). Members that tokenize differently from the base or have
    another number of blocks get NaN there, said in `df.attrs["notes"]`; served members are
    refused (the lens needs weights)."""
    check_prompt(prompt)
    labels = models or family.labels
    base = family.load(family.base.label)
    base_lens = lens_of(base, prompt, response, chat)
    lenses: dict[str, Lens] = {}
    for i, label in enumerate(labels):
        check_cancel(cancel)
        member = family.load(label)
        lenses[label] = base_lens if label == family.base.label else lens_of(member, prompt, response, chat)
        if progress:
            progress(label, i + 1, len(labels))
    reasons = {label: mismatch(lenses[label], base_lens) for label in labels}
    notes = [f"{label}: {reason}" for label, reason in reasons.items() if reason]
    with fair_share([base.model, *(family.load(label).model for label in labels)]):
        reduced = lens_reductions({k: v for k, v in lenses.items() if not reasons[k]}, base_lens, cancel)
        reduced |= {k: lens_reductions({k: v}, None, cancel)[k] for k, v in lenses.items() if reasons[k]}
    frames = [lens_frame(label, family.load(label), lenses[label], reduced[label]) for label in labels]
    df = pd.concat(frames, ignore_index=True)[COLUMNS]
    df.attrs["notes"] = notes
    return df


def parting(lens: pd.DataFrame, tiny: float = 1e-6) -> list[str]:
    """Per descendant, where its lens parts from the base's: the first block with any KL, and
    the earliest blocks reaching half and 90% of the KL at the last block (the output's KL is
    where every change ends up, so it is the yardstick, never the headline)."""
    data = lens.dropna(subset=["kl_to_base"])
    base = lens["model"].iloc[0] if len(lens) else None
    lines = []
    for model, rows in data[data["model"] != base].groupby("model", sort=False):
        kl = rows.groupby("layer")["kl_to_base"].mean()  # per block, mean over response tokens
        final = float(kl.iloc[-1])
        moved = kl[kl > tiny]
        if moved.empty:
            lines.append(f"{model}'s lens equals the base's at every block on this response")
            continue
        first = int(moved.index[0])
        before = "from the first block" if first == kl.index[0] else f"at block {first} (KL exactly 0 before it)"
        if final <= tiny:
            lines.append(f"{model}'s lens parts from the base's {before}, and meets it again at the output")
            continue
        half, most = (int(kl[kl >= share * final].index[0]) for share in (0.5, 0.9))
        lines.append(f"{model}'s lens parts from the base's {before}; it reaches half of the output's "
                     f"KL ({final:.3g} nats) at block {half}, 90% at block {most}")  # fmt: skip
    return lines


class Lens:
    """One model's lens on one text: the residual states (layers, targets, hidden) at the
    positions that predict the response, the model's final norm and head to read them, and the
    token ids. The log-distributions (layers × targets × vocab: 450 MB for an 18-block model
    with a 262k vocabulary on 24 tokens) are never all held: `lens_reductions` reads them a
    slice of rows at a time."""

    def __init__(self, states: torch.Tensor, body: Anatomy, ids: torch.Tensor, start: int, key) -> None:
        self.states = states  # (layers, targets, hidden)
        self.body = body
        self.ids = ids  # (seq,)
        self.start = start
        self.key = key  # the tokenizer key: lenses compare only on the same ids

    @property
    def targets(self) -> torch.Tensor:
        return self.ids[self.start :]  # (targets,)

    @property
    def vocab(self) -> int:
        return int(self.body.head.weight.shape[0])


def lens_of(member: Member, prompt: str, response: str, chat: str) -> Lens:
    """The residual state after every block at the positions that predict the response tokens."""
    problem = build_problem(member, prompt, response, chat)
    body = anatomy(member)
    with fair_share([member.model]):
        states = capture(member, problem.ids, "block")  # layers × (1, seq, hidden)
    at = problem.positions - 1  # (targets,) the positions that predict each response token
    stacked = torch.stack([s[0, at.to(s.device)] for s in states])  # (layers, targets, hidden)
    return Lens(stacked, body, problem.ids, problem.start, member.tokenizer_key)


def mismatch(own: Lens, base: Lens) -> str | None:
    """Why two lenses cannot be compared block by block, or None when they can."""
    if own.key != base.key or not torch.equal(own.ids, base.ids):
        return "tokenizes the text differently from the base"
    if own.states.shape[0] != base.states.shape[0]:
        return f"has {own.states.shape[0]} blocks and the base {base.states.shape[0]}: no block-by-block KL"
    if own.vocab != base.vocab:
        return "has another vocabulary than the base"
    return None


@torch.no_grad()
def lens_reductions(lenses: dict[str, Lens], base: Lens | None, cancel: CancelToken | None = None) -> dict[str, tuple]:
    """Per lens and (layer, target): the lens's log-prob of the response token, its top token,
    and KL(lens ‖ base) (NaN without a base), all lenses read together a slice of rows at a
    time: the base's log-probs are computed once per slice, and equal states in equal slices
    give exactly equal log-probs (a model equal to the base up to a block: KL exactly 0)."""
    labels = list(lenses)
    first = lenses[labels[0]]
    n_layers, _, _ = first.states.shape
    device = first.states.device
    targets = first.targets.to(device).expand(n_layers, -1)  # (layers, targets)
    reference = base.states.to(device) if base is not None else first.states

    def reduce(ids, base_states, *states):
        check_cancel(cancel)
        q = base.body.lens(base_states.to(base.states.device)).to(device) if base is not None else None
        out = []
        for lens, own in zip((lenses[k] for k in labels), states, strict=True):
            p = q if lens is base else lens.body.lens(own.to(lens.states.device)).to(device)  # (rows, vocab)
            kl = torch.full(p.shape[:1], float("nan")) if q is None else (p.exp() * (p - q)).sum(-1).clamp_min(0.0)
            out += [p.gather(-1, ids.unsqueeze(-1))[:, 0].cpu(), p.argmax(-1).cpu(), kl.cpu()]
        return tuple(out)

    states = [lenses[k].states.to(device) for k in labels]
    flat = vocab.over_rows(reduce, targets, reference, *states, lead=2, width=2 * first.vocab)
    return {k: flat[3 * i : 3 * i + 3] for i, k in enumerate(labels)}


def lens_frame(label: str, member: Member, lens: Lens, reduced: tuple) -> pd.DataFrame:
    picked, top, kl = reduced  # (layers, targets) each
    n_layers, n_targets = picked.shape
    names = np.array(display_tokens(member.tokenizer, lens.ids.tolist()), dtype=object)
    top_names = np.array(alone(member.tokenizer, top.reshape(-1).tolist()), dtype=object)
    return pd.DataFrame({
        "model": label,
        "layer": np.repeat(np.arange(n_layers), n_targets),
        "position": np.tile(np.arange(n_targets), n_layers),
        "token": np.tile(names[lens.start :], n_layers),
        "logprob": picked.reshape(-1).numpy().astype(float),
        "top": top_names,
        "kl_to_base": kl.reshape(-1).numpy().astype(float),
    })  # fmt: skip


def alone(tokenizer, ids: list[int]) -> list[str]:
    """Each id's text decoded on its own (a lens's top tokens are not a sequence)."""
    text = {i: display_tokens(tokenizer, [i])[0] for i in set(ids)}
    return [text[i] for i in ids]
