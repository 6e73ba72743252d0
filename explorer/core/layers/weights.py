"""Where the weights moved: per descendant, block and module, the relative size of the change.

`relative_change` = ‖W_descendant − W_base‖_F / ‖W_base‖_F per weight matrix (or vector).
For a LoRA adapter the change of an adapted module is its scaled low-rank product s·B·A, whose
norm comes from two rank × rank matrices (‖BA‖² = Σ (BᵀB) ⊙ (AAᵀ)): nothing is merged into a
copy and no full-size product is formed. Members of another shape (a distilled student) have no
weight-by-weight comparison and are refused with a sentence.
"""

from __future__ import annotations

import re

import pandas as pd
import torch

from explorer.core.family import Family
from explorer.core.layers.anatomy import Anatomy, anatomy
from explorer.core.member import Member, plain_model

COLUMNS = ["model", "layer", "block", "module", "kind", "relative_change", "change_norm", "base_norm"]
_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.(.+)$")


def weight_diff(family: Family, models: list[str] | None = None) -> pd.DataFrame:
    """One row per descendant and weight: `layer` (the block index; -1 before the blocks, the
    number of blocks after them: final norm and head; `block` says it in words), `module` (e.g. `self_attn.q_proj.weight`),
    `kind` (`full` or `lora`). Refused members are named in `df.attrs["notes"]`; if every asked
    member is refused, a ValueError says why."""
    base = family.load(family.base.label)
    wanted = [m for m in (models or family.labels) if m != family.base.label]
    body = anatomy(base)  # a served base: its sentence first
    reference, tail = plain_weights(base), tail_names(base, body)
    frames, notes = [], []
    for label in wanted:
        member = family.load(label)
        rows = member_rows(member, reference, (len(body.blocks), body.hidden), tail)
        if isinstance(rows, str):
            notes.append(f"{label}: {rows}")
        else:
            frames.append(pd.DataFrame(rows).assign(model=label))
    if not frames:
        raise ValueError("weight_diff: " + ("; ".join(notes) or "no descendant to compare with the base"))
    df = pd.concat(frames, ignore_index=True)[COLUMNS]
    df.attrs["notes"] = notes
    return df


def plain_weights(member: Member) -> dict[str, torch.Tensor]:
    """Parameters by their name in the plain model (peft's wrapping names taken off)."""
    return {
        name.replace(".base_layer.", "."): p.detach()
        for name, p in plain_model(member.model).named_parameters()
        if "lora_" not in name
    }


def tail_names(member: Member, body: Anatomy) -> set[str]:
    """The plain names of the weights after the blocks: the final norm's and the head's, found
    by the modules themselves (GPT-NeoX calls its head `embed_out`). A head tied to the input
    embeddings is one weight with them, and stays before the blocks."""
    tied = member.model.get_input_embeddings().weight
    tail = {id(p) for module in (body.norm, body.head) for p in module.parameters() if p is not tied}
    return {name.replace(".base_layer.", ".") for name, p in plain_model(member.model).named_parameters() if id(p) in tail}


def member_rows(
    member: Member, reference: dict[str, torch.Tensor], base_shape: tuple[int, int], tail: set[str]
) -> list[dict] | str:
    """The rows of one descendant, or why it cannot be compared."""
    body = anatomy(member)
    if (len(body.blocks), body.hidden) != base_shape:
        return (f"has {len(body.blocks)} blocks of width {body.hidden} and the base {base_shape[0]} of "
                f"width {base_shape[1]}: another shape, with no weight-by-weight comparison")  # fmt: skip
    own = plain_weights(member)
    odd = sorted(n for n in own if n not in reference or own[n].shape != reference[n].shape)
    if odd or set(own) != set(reference):
        return f"its weights do not match the base's one for one ({(odd or ['names'])[0]})"
    low_rank = lora_deltas(member)
    rows = []
    for name, weight in own.items():
        dense = weight.float() - reference[name].float()  # 0 where an adapter froze the base
        if name not in low_rank:
            kind, change = "full", float(dense.norm())
        elif not dense.any():
            kind, change = "lora", low_rank[name]
        else:  # the base weights moved too: the sum needs the product once
            kind, change = "lora", float((dense + dense_delta(member, name)).norm())
        rows.append(row(name, base_shape[0], kind, change, float(reference[name].float().norm()), tail))
    return rows


def row(name: str, n_blocks: int, kind: str, change: float, base_norm: float, tail: set[str]) -> dict:
    layer, module = where(name, n_blocks, tail)
    block = "embed" if layer < 0 else ("head" if layer == n_blocks else str(layer))
    return {"layer": layer, "block": block, "module": module, "kind": kind, "change_norm": change,
            "base_norm": base_norm, "relative_change": change / base_norm if base_norm else float("nan")}  # fmt: skip


def where(name: str, n_blocks: int, tail: set[str]) -> tuple[int, str]:
    """(block index, module path inside it); n_blocks for the weights in `tail` (after the
    blocks), -1 for the rest outside them (token and position embeddings)."""
    found = _BLOCK.search(name)
    if found:
        return int(found.group(1)), found.group(2)
    module = name.split(".", 1)[-1] if name.startswith("model.") else name
    return (n_blocks if name in tail else -1), module


def lora_layers(member: Member) -> dict[str, torch.nn.Module]:
    """Adapted modules by the plain name of their weight."""
    found = {}
    for name, module in plain_model(member.model).named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer"):
            found[f"{name}.weight"] = module
    return found


def lora_deltas(member: Member) -> dict[str, float]:
    """‖s·B·A‖_F of every adapted weight, from the rank × rank Gram matrices."""
    out = {}
    for name, module in lora_layers(member).items():
        total = 0.0
        for adapter in module.active_adapters:
            a, b = lora_factors(module, adapter)  # (r, in), (out, r)
            if a is None:
                continue
            gram = (b.T @ b) * (a @ a.T)  # (r, r): Σ of it is ‖BA‖²
            total += float(module.scaling[adapter]) ** 2 * float(gram.sum().clamp_min(0))
        out[name] = total**0.5
    return out


def lora_factors(module, adapter: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The (r, in) and (out, r) factors of one adapter of a LoRA layer (linear or embedding)."""
    if adapter in getattr(module, "lora_A", {}):
        return module.lora_A[adapter].weight.detach().float(), module.lora_B[adapter].weight.detach().float()
    if adapter in getattr(module, "lora_embedding_A", {}):
        return module.lora_embedding_A[adapter].detach().float(), module.lora_embedding_B[adapter].detach().float()
    return None, None


def dense_delta(member: Member, name: str) -> torch.Tensor:
    """The adapters' change of one weight as a full matrix, as peft merges it (turned where the
    weight is stored transposed: GPT-2's Conv1D, embeddings), only for the rare module whose
    base weights moved too (an adapter on a fine-tune of the base)."""
    module = lora_layers(member)[name]
    deltas = [module.get_delta_weight(a).float() for a in module.active_adapters if lora_factors(module, a)[0] is not None]
    return torch.stack(deltas).sum(0) if deltas else torch.zeros(())
