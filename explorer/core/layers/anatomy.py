"""Where a causal LM keeps its blocks, final norm and head: what the layer-wise tools hook.

One function finds them for Llama-like models (Llama, Qwen, Mistral, SmolLM2: `model.layers`,
`model.norm`), GPT-2-like ones (`transformer.h`, `ln_f`) and the same wrapped in a peft adapter
(the adapter's layers stay in place, so a hooked LoRA module runs with its adapter).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from explorer.core.member import Member, plain_model

SITES = ("block", "attention", "mlp")
_BLOCKS = ("layers", "h", "blocks")
_NORMS = ("norm", "ln_f", "final_layernorm")
_PARTS = {"attention": ("self_attn", "attn", "attention"), "mlp": ("mlp", "feed_forward")}


@dataclass(frozen=True)
class Anatomy:
    """The modules a residual-stream tool needs, in the order the forward pass runs them."""

    blocks: list[torch.nn.Module]
    norm: torch.nn.Module
    head: torch.nn.Module
    hidden: int

    def site(self, layer: int, site: str) -> torch.nn.Module:
        """The module whose output is the `site` of block `layer`."""
        block = self.blocks[layer]
        if site == "block":
            return block
        for name in _PARTS[site]:
            if hasattr(block, name):
                return getattr(block, name)
        raise ValueError(f"site: this architecture's blocks have no {site} module")

    def lens(self, hidden: torch.Tensor) -> torch.Tensor:
        """Log-probs (..., vocab) from residual states (..., hidden): the model's own final norm
        and head, as the logit lens reads a middle layer."""
        logits = self.head(self.norm(hidden.to(self.head.weight.dtype)))
        return torch.log_softmax(logits.float(), dim=-1)


def anatomy(member: Member) -> Anatomy:
    """The blocks, final norm and head of a member with weights; a sentence for anything else."""
    if not member.has_weights:
        raise ValueError(
            f"{member.ref.label}: is served, and the layer-wise tools need its weights "
            "(load the family from local files or the hub to look inside)"
        )
    model = member.model
    inner = plain_model(model)
    decoder = inner.get_decoder() if hasattr(inner, "get_decoder") else inner
    blocks = _first(decoder, _BLOCKS)
    norm = _first(decoder, _NORMS)
    if blocks is None or norm is None:
        raise ValueError(
            f"{member.ref.label}: cannot find the blocks and final norm of a {type(inner).__name__}"
        )
    head = model.get_output_embeddings()
    return Anatomy(list(blocks), norm, head, int(head.weight.shape[-1]))


def _first(module: torch.nn.Module, names: tuple[str, ...]) -> Any:
    for name in names:
        found = getattr(module, name, None)
        if isinstance(found, torch.nn.Module):
            return found
    return None


def output_of(out: Any) -> torch.Tensor:
    """A module's main output: blocks and attention return tuples in some versions."""
    return out[0] if isinstance(out, tuple) else out


def with_output(out: Any, tensor: torch.Tensor) -> Any:
    """`out` with its main output replaced by `tensor`."""
    return (tensor, *out[1:]) if isinstance(out, tuple) else tensor


@contextmanager
def hooked(modules: list[torch.nn.Module], hook) -> Iterator[None]:
    """`hook(index, output) -> output | None` on each module's forward, removed on exit."""
    handles = [
        m.register_forward_hook(lambda _m, _a, out, i=i: hook(i, out)) for i, m in enumerate(modules)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture(member: Member, ids: torch.Tensor, site: str, rows: int = 1) -> list[torch.Tensor]:
    """Each block's `site` output (1, seq, hidden) for the sequence `ids` (seq,), no grad; run
    as a batch of `rows` copies when it must match a batched pass bit for bit."""
    body = anatomy(member)
    modules = [body.site(layer, site) for layer in range(len(body.blocks))]
    seen: list[torch.Tensor | None] = [None] * len(modules)

    def keep(i: int, out: Any) -> None:
        seen[i] = output_of(out)[:1].detach()

    with torch.no_grad(), hooked(modules, keep):
        member.model(input_ids=ids.expand(rows, -1).to(member.device), use_cache=False, logits_to_keep=1)
    return [s for s in seen if s is not None]


def same_shapes(donor: Member, receiver: Member) -> str | None:
    """Why activations of `donor` cannot stand in for `receiver`'s, or None when they can."""
    a, b = anatomy(donor), anatomy(receiver)
    names = donor.ref.label, receiver.ref.label
    if len(a.blocks) != len(b.blocks):
        return f"{names[0]} has {len(a.blocks)} blocks and {names[1]} {len(b.blocks)}"
    if a.hidden != b.hidden:
        return f"{names[0]}'s residual stream is {a.hidden} wide and {names[1]}'s {b.hidden}"
    if donor.tokenizer_key != receiver.tokenizer_key:
        return f"{names[0]} and {names[1]} tokenize differently"
    return None
