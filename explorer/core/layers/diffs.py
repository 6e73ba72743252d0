"""Activation differences: what an adaptation adds to the residual stream, read as tokens.

Per descendant and block, the mean of (descendant's − base's) residual stream after that block
over the first few token positions of neutral text (Minder et al. 2025, arXiv 2510.13900: a
narrow fine-tune shifts even unrelated text towards its training data). Read through the
descendant's own final norm and head — the logit lens applied to the difference — its top
raised tokens tend to name what the adaptation taught; `explorer.core.steering.steer` then adds
the difference to the base while it samples, to test whether it carries the behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from explorer.core.estimate import Counter, Estimate, activation_bytes, pass_timing
from explorer.core.family import Family
from explorer.core.layers.anatomy import anatomy, hooked, output_of, same_shapes
from explorer.core.layers.lens import alone
from explorer.core.layers.neutral import neutral_texts
from explorer.core.member import Member
from explorer.core.params import CancelToken, ProgressFn, check_cancel
from explorer.core.results import ResultFile
from explorer.core.threads import fair_share

MEAN = -1  # the `position` of the mean over the first positions
POSITIONS = 5
TOP = 10
TINY = 1e-6  # a difference this small has no direction to read


@dataclass
class ActivationDiff:
    """Mean residual differences per descendant: `df` (norms per model, block and position;
    `relative` = the norm over the base's mean residual norm there), `tokens` (the readings:
    top raised and lowered tokens per model, block and position; `position` −1 = the mean over
    positions) and `vector(model, layer)`, the difference itself, for steering."""

    base: str
    layer: int  # the block read and steered by default: the middle one
    positions: int
    texts: list[str]
    vectors: dict[str, torch.Tensor]  # model -> (layers, positions, hidden)
    base_norm: torch.Tensor  # (layers,) mean ‖h_base‖ over the same states
    df: pd.DataFrame
    tokens: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    KIND = "ActivationDiff"

    @property
    def models(self) -> list[str]:
        return list(self.vectors)

    def vector(self, model: str, layer: int | None = None, position: int = MEAN) -> torch.Tensor:
        """The mean difference (hidden,) of `model` at `layer` (default: `self.layer`), at one
        text position or averaged over them (`MEAN`)."""
        if model not in self.vectors:
            raise ValueError(f"model: no activation difference for {model!r} (have {', '.join(self.vectors) or 'none'})")
        layer = self.layer if layer is None else layer
        per = self.vectors[model][layer]  # (positions, hidden)
        return per.mean(0) if position == MEAN else per[position]

    def reading(self, model: str, layer: int | None = None, position: int = MEAN, k: int = 5) -> dict[str, list[str]]:
        """The top `k` raised and lowered tokens of one difference, as text."""
        layer = self.layer if layer is None else layer
        rows = self.tokens.query("model == @model and layer == @layer and position == @position and rank < @k")
        return {d: rows[rows.direction == d].sort_values("rank")["token"].tolist() for d in ("raised", "lowered")}

    @property
    def summary(self) -> list[str]:
        """One sentence per descendant: what its difference at the default block reads as."""
        lines = []
        for model in self.models:
            read = self.reading(model)
            norm = self.df.query("model == @model and layer == @self.layer and position == @MEAN")["relative"]
            size = f"{float(norm.iloc[0]):.0%} of the base's residual norm" if len(norm) else ""
            if not read["raised"]:
                lines.append(f"{model} leaves block {self.layer}'s residual stream as the base's on neutral text")
                continue
            lines.append(f"{model}, block {self.layer} ({size}): raises {', '.join(read['raised'])}; "
                         f"lowers {', '.join(read['lowered'])}")  # fmt: skip
        return lines + list(self.notes)

    def save(self, path) -> None:
        long = [{"model": m, "layer": i, "position": j, "values": v[i, j].tolist()}
                for m, v in self.vectors.items() for i in range(v.shape[0]) for j in range(v.shape[1])]  # fmt: skip
        meta = {"base": self.base, "layer": self.layer, "positions": self.positions, "texts": self.texts,
                "base_norm": self.base_norm.tolist(), "notes": self.notes}  # fmt: skip
        ResultFile(self.KIND).save(path, tables={"df": self.df, "tokens": self.tokens, "vectors": pd.DataFrame(long)}, meta=meta)

    @classmethod
    def load(cls, path) -> ActivationDiff:
        tables, meta = ResultFile(cls.KIND).load(path)
        vectors = {}
        for model, rows in tables["vectors"].groupby("model", sort=False):
            shape = (int(rows.layer.max()) + 1, int(rows.position.max()) + 1, -1)
            vectors[model] = torch.tensor(np.stack(rows["values"].map(np.asarray).tolist())).float().reshape(shape)
        return cls(base=meta["base"], layer=meta["layer"], positions=meta["positions"], texts=meta["texts"],
                   vectors=vectors, base_norm=torch.tensor(meta["base_norm"]), df=tables["df"],
                   tokens=tables["tokens"], notes=meta["notes"])  # fmt: skip


def activation_diff(
    family: Family, models: list[str] | None = None, texts: list[str] | None = None,
    positions: int = POSITIONS, layer: int | None = None, top: int = TOP,
    progress: ProgressFn | None = None, cancel: CancelToken | None = None,
) -> ActivationDiff:  # fmt: skip
    """Every block's mean residual difference, descendant minus base, over the first
    `positions` tokens of `texts` (default: the bundled neutral set; add the user's prompts to
    it as they like), read through each descendant's own final norm and head. Descendants of
    another shape or tokenizer, and served members, are left out with a sentence."""
    if not isinstance(positions, int) or positions < 1:
        raise ValueError(f"positions: a positive number of token positions, got {positions!r}")
    base = family.load(family.base.label)
    body = anatomy(base)  # a served base: its sentence first
    texts = texts if texts is not None else neutral_texts()
    ids, kept, lead = text_ids(base, texts, positions)
    layer = (len(body.blocks) - 1) // 2 if layer is None else layer
    if not 0 <= layer < len(body.blocks):
        raise ValueError(f"layer: a block index in [0, {len(body.blocks)}), got {layer!r}")
    wanted = [m for m in (models or family.labels) if m != family.base.label]
    reference = block_states(base, ids, lead)  # (layers, texts, positions, hidden)
    vectors, notes = {}, []
    if len(kept) < len(texts):
        notes.append(f"{len(texts) - len(kept)} of the {len(texts)} texts left out: {base.ref.label}'s tokenizer "
                     f"does not know all their words, or they have fewer than {positions} tokens")  # fmt: skip
    for i, label in enumerate(wanted):
        check_cancel(cancel)
        member = family.load(label)
        reason = member.has_weights and same_shapes(member, base)
        if reason is None:
            vectors[label] = (block_states(member, ids, lead) - reference).mean(1)  # (layers, positions, hidden)
        else:
            notes.append(f"No activation difference for {label}: {reason or 'it is served, and this needs its weights'}")
        if progress:
            progress(label, i + 1, len(wanted))
    base_norm = reference.norm(dim=-1).mean(dim=(1, 2))  # (layers,)
    df = norms_frame(vectors, base_norm)
    tokens = pd.concat([readings(family.load(m), v, top).assign(model=m) for m, v in vectors.items()] or
                       [pd.DataFrame(columns=TOKEN_COLUMNS)], ignore_index=True)[TOKEN_COLUMNS]  # fmt: skip
    return ActivationDiff(family.base.label, layer, positions, kept, vectors, base_norm, df, tokens, notes)


def text_ids(member: Member, texts: list[str], positions: int) -> tuple[torch.Tensor, list[str], int]:
    """(texts, lead + positions) ids of the texts this tokenizer reads without unknown tokens
    and with at least `positions` tokens after the `lead` special tokens it puts first, each cut
    there (one batch without padding: a causal model's first states never see what follows)."""
    tok = member.tokenizer
    unk, special = tok.unk_token_id, set(tok.all_special_ids)
    rows, kept, leads = [], [], set()
    for text in texts:
        ids = tok(text)["input_ids"]
        lead = next((i for i, t in enumerate(ids) if t not in special), len(ids))
        if (unk is None or unk not in ids) and len(ids) - lead >= positions:
            rows.append(ids[: lead + positions])
            kept.append(text)
            leads.add(lead)
    if not rows:
        raise ValueError(f"texts: none of the {len(texts)} texts has {positions} tokens that {member.ref.label}'s "
                         "tokenizer knows; give texts in the models' language, or fewer positions")  # fmt: skip
    if len(leads) > 1:
        raise ValueError("texts: the tokenizer begins these texts with different special tokens; give plain text")
    return torch.tensor(rows), kept, leads.pop()


def block_states(member: Member, ids: torch.Tensor, lead: int) -> torch.Tensor:
    """Every block's output (layers, texts, positions, hidden) after the `lead` special tokens
    each row begins with, in one batched pass, no grad."""
    body = anatomy(member)
    seen: list[Any] = [None] * len(body.blocks)

    def keep(i: int, out: Any) -> None:
        seen[i] = output_of(out)[:, lead:].detach().float().cpu()  # (texts, positions, hidden)

    with torch.no_grad(), fair_share([member.model], batched=True), hooked(body.blocks, keep):
        member.model(input_ids=ids.to(member.device), use_cache=False, logits_to_keep=1)
    return torch.stack(seen)


TOKEN_COLUMNS = ["model", "layer", "position", "direction", "rank", "token", "logit"]


def readings(member: Member, vectors: torch.Tensor, top: int) -> pd.DataFrame:
    """Top raised and lowered tokens of each difference (layers, positions, hidden) and of its
    mean over positions, through the member's own final norm and head."""
    body = anatomy(member)
    every = torch.cat([vectors, vectors.mean(1, keepdim=True)], dim=1)  # (layers, positions + 1, hidden)
    with torch.no_grad():
        weight = body.head.weight
        logits = body.head(body.norm(every.to(weight.device, weight.dtype))).float().cpu()  # (layers, P + 1, vocab)
    frames = []
    n_layers, n_pos, _ = logits.shape
    for direction, sign in (("raised", 1.0), ("lowered", -1.0)):
        values, index = (sign * logits).topk(min(top, logits.shape[-1]), dim=-1)  # (layers, P + 1, top)
        names = np.array(alone(member.tokenizer, index.reshape(-1).tolist()), dtype=object)
        position = np.arange(n_pos)
        position[-1] = MEAN
        frames.append(pd.DataFrame({
            "layer": np.repeat(np.arange(n_layers), n_pos * values.shape[-1]),
            "position": np.tile(np.repeat(position, values.shape[-1]), n_layers),
            "direction": direction, "rank": np.tile(np.arange(values.shape[-1]), n_layers * n_pos),
            "token": names, "logit": (sign * values).reshape(-1).numpy().astype(float),
        }))  # fmt: skip
    table = pd.concat(frames, ignore_index=True)
    norms = every.norm(dim=-1).numpy()  # (layers, P + 1)
    at = np.where(table["position"] == MEAN, n_pos - 1, table["position"]).astype(int)
    return table[norms[table["layer"].to_numpy(), at] > TINY].reset_index(drop=True)


def norms_frame(vectors: dict[str, torch.Tensor], base_norm: torch.Tensor) -> pd.DataFrame:
    """Per model, block and position (−1: the mean over positions), the difference's norm and
    that norm over the base's mean residual norm at the block."""
    rows = []
    for model, v in vectors.items():
        every = torch.cat([v, v.mean(1, keepdim=True)], dim=1).norm(dim=-1)  # (layers, P + 1)
        for layer in range(every.shape[0]):
            for j in range(every.shape[1]):
                norm = float(every[layer, j])
                rows.append({"model": model, "layer": layer, "position": MEAN if j == every.shape[1] - 1 else j,
                             "norm": norm, "relative": norm / max(float(base_norm[layer]), TINY)})  # fmt: skip
    return pd.DataFrame(rows, columns=["model", "layer", "position", "norm", "relative"])


def diff_estimate(family: Family, models: list[str] | None = None, texts: list[str] | None = None,
                  positions: int = POSITIONS) -> Estimate:  # fmt: skip
    """Seconds and memory of `activation_diff`: one batched pass over the texts per model."""
    base = family.load(family.base.label)
    ids, _, _ = text_ids(base, texts if texts is not None else neutral_texts(), positions)
    labels = [family.base.label, *[m for m in (models or family.labels) if m != family.base.label]]
    total, passes = 0.0, 0.0
    for label in labels:
        member = family.load(label)
        if not member.has_weights:
            continue
        c = Counter()
        c.forward(ids.shape[0], ids.shape[1])
        with fair_share([member.model], batched=True):
            total += c.seconds(pass_timing(member))
        passes += c.token_passes
    detail = f"{len(labels)} models read on {ids.shape[0]} texts"
    return Estimate("differences", total, passes, activation_bytes(base, ids.shape[0], ids.shape[1]), detail)
