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

from explorer.core.attribution.problem import build_problem
from explorer.core.family import Family
from explorer.core.layers.anatomy import anatomy, capture
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
    notes: list[str] = []
    base_lens = lens_of(base, prompt, response, chat)
    frames = []
    for i, label in enumerate(labels):
        check_cancel(cancel)
        member = family.load(label)
        own = base_lens if label == family.base.label else lens_of(member, prompt, response, chat)
        kl = kl_rows(own, base_lens, label, notes)
        frames.append(lens_frame(label, member, own, kl))
        if progress:
            progress(label, i + 1, len(labels))
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
    """One model's lens on one text: log-probs (layers, targets, vocab) and the token ids."""

    def __init__(self, logprobs: torch.Tensor, ids: torch.Tensor, start: int, key) -> None:
        self.logprobs = logprobs  # (layers, targets, vocab)
        self.ids = ids  # (seq,)
        self.start = start
        self.key = key  # the tokenizer key: lenses compare only on the same ids

    @property
    def targets(self) -> torch.Tensor:
        return self.ids[self.start :]  # (targets,)


def lens_of(member: Member, prompt: str, response: str, chat: str) -> Lens:
    """The lens of every block at the positions that predict the response tokens."""
    problem = build_problem(member, prompt, response, chat)
    body = anatomy(member)
    with fair_share([member.model]):
        states = capture(member, problem.ids, "block")  # layers × (1, seq, hidden)
        at = problem.positions - 1  # (targets,) the positions that predict each response token
        with torch.no_grad():
            stacked = torch.cat([s[0, at] for s in states]).view(len(states), len(at), -1)
            logprobs = body.lens(stacked).cpu()  # (layers, targets, vocab)
    return Lens(logprobs, problem.ids, problem.start, member.tokenizer_key)


def kl_rows(own: Lens, base: Lens, label: str, notes: list[str]) -> np.ndarray:
    """KL(own ‖ base) per (layer, target), flattened; NaN where the two do not line up."""
    n_layers, n_targets, _ = own.logprobs.shape
    reason = None
    if own.key != base.key or not torch.equal(own.ids, base.ids):
        reason = "tokenizes the text differently from the base"
    elif n_layers != base.logprobs.shape[0]:
        reason = f"has {n_layers} blocks and the base {base.logprobs.shape[0]}: no block-by-block KL"
    elif own.logprobs.shape[-1] != base.logprobs.shape[-1]:
        reason = "has another vocabulary than the base"
    if reason:
        notes.append(f"{label}: {reason}")
        return np.full(n_layers * n_targets, np.nan)
    p, q = own.logprobs, base.logprobs  # (layers, targets, vocab) log-probs
    kl = (p.exp() * (p - q)).sum(-1).clamp_min(0.0)  # (layers, targets)
    return kl.reshape(-1).numpy()


def lens_frame(label: str, member: Member, lens: Lens, kl: np.ndarray) -> pd.DataFrame:
    n_layers, n_targets, _ = lens.logprobs.shape
    targets = lens.targets  # (targets,)
    picked = lens.logprobs.gather(-1, targets.view(1, -1, 1).expand(n_layers, -1, 1))[..., 0]
    top = lens.logprobs.argmax(-1)  # (layers, targets)
    names = np.array(display_tokens(member.tokenizer, lens.ids.tolist()), dtype=object)
    top_names = np.array(alone(member.tokenizer, top.reshape(-1).tolist()), dtype=object)
    return pd.DataFrame({
        "model": label,
        "layer": np.repeat(np.arange(n_layers), n_targets),
        "position": np.tile(np.arange(n_targets), n_layers),
        "token": np.tile(names[lens.start :], n_layers),
        "logprob": picked.reshape(-1).numpy().astype(float),
        "top": top_names,
        "kl_to_base": kl.astype(float),
    })  # fmt: skip


def alone(tokenizer, ids: list[int]) -> list[str]:
    """Each id's text decoded on its own (a lens's top tokens are not a sequence)."""
    text = {i: display_tokens(tokenizer, [i])[0] for i in set(ids)}
    return [text[i] for i in ids]
