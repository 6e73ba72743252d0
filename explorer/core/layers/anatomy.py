"""Where a causal LM keeps its blocks, final norm and head: what the layer-wise tools hook.

One function finds them for Llama-like models (Llama, Mistral, Qwen, Gemma, Phi-3, OLMo 2:
`model.layers`, `model.norm`), GPT-2 (`transformer.h`, `ln_f`), GPT-NeoX (`gpt_neox.layers`,
`final_layer_norm`) and the same wrapped in a peft adapter (the adapter's layers stay in place,
so a hooked LoRA module runs with its adapter); other decoders by their structure (the last
list of blocks, the norm after it). The head's output is scaled and soft-capped as the model's
own forward does (Cohere's `logit_scale`, Granite's `logits_scaling`, Gemma 2's soft-capping),
so the lens of the last block is the model's own prediction; tests/test_architectures.py runs
every tool on each of these.
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
_NORMS = ("norm", "ln_f", "final_layernorm", "final_layer_norm")
_PARTS = {"attention": ("self_attn", "attn", "attention", "linear_attn"), "mlp": ("mlp", "feed_forward")}


@dataclass(frozen=True)
class Anatomy:
    """The modules a residual-stream tool needs, in the order the forward pass runs them."""

    blocks: list[torch.nn.Module]
    norm: torch.nn.Module
    head: torch.nn.Module
    hidden: int
    scale: float = 1.0  # logits × scale after the head (Cohere, Granite)
    softcap: float | None = None  # then softcap · tanh(logits / softcap) (Gemma 2)

    def site(self, layer: int, site: str) -> torch.nn.Module:
        """The module whose output is the `site` of block `layer`."""
        block = self.blocks[layer]
        if site == "block":
            return block
        for name in _PARTS[site]:
            if hasattr(block, name):
                return getattr(block, name)
        raise ValueError(
            f"site: this model's blocks ({type(block).__name__}) have no {site} module of their own; "
            "patch whole blocks (site='block')"
        )

    def lens(self, hidden: torch.Tensor) -> torch.Tensor:
        """Log-probs (..., vocab) from residual states (..., hidden): the model's own final norm
        and head, as the logit lens reads a middle layer."""
        logits = self.head(self.norm(hidden.to(self.head.weight.dtype))).float() * self.scale  # (..., vocab)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return torch.log_softmax(logits, dim=-1)


def anatomy(member: Member) -> Anatomy:
    """The blocks, final norm and head of a member with weights; a sentence for anything else."""
    if not member.has_weights:
        raise ValueError(
            f"{member.ref.label}: is served, and the layer-wise tools need its weights "
            "(load the family from local files or the hub to look inside)"
        )
    model = member.model
    inner = plain_model(model)
    decoder = _decoder(inner)
    blocks = _first(decoder, _BLOCKS)
    blocks = _by_structure(decoder, torch.nn.ModuleList) if blocks is None else blocks
    norm = _first(decoder, _NORMS)
    norm = _by_structure(decoder, "Norm") if norm is None else norm
    if blocks is None or norm is None:
        raise ValueError(
            f"{member.ref.label}: the layer tools cannot find the blocks and final norm of a "
            f"{type(inner).__name__} (a list of blocks and a norm after it); sampling, scoring "
            "and attribution do not need them"
        )
    head = model.get_output_embeddings()
    return Anatomy(list(blocks), norm, head, int(head.weight.shape[-1]), *logit_transform(inner.config))


def logit_transform(config: Any) -> tuple[float, float | None]:
    """(scale, softcap) the model's forward applies to the head's output, from its config."""
    text = config.get_text_config()
    scale = (getattr(text, "logit_scale", None) or 1.0) / (getattr(text, "logits_scaling", None) or 1.0)
    return float(scale), getattr(text, "final_logit_softcapping", None)


def _decoder(inner: torch.nn.Module) -> torch.nn.Module:
    """The module that holds the blocks: transformers' `get_decoder()`, else the usual `model`
    child (Llama 4's causal LM names itself its decoder), else the model itself."""
    getter = getattr(inner, "get_decoder", None)
    for candidate in (getter() if getter else None, getattr(inner, "model", None)):
        if isinstance(candidate, torch.nn.Module) and candidate is not inner:
            return candidate
    return inner


def _by_structure(decoder: torch.nn.Module, kind: type | str) -> Any:
    """Where the names are unknown (MPT's `norm_f`, XGLM's `layer_norm`): the last child of the
    decoder that is a module list of blocks, or a norm (its class named so) after them."""
    found = [m for m in decoder.children()
             if (isinstance(m, kind) if isinstance(kind, type) else kind in type(m).__name__)]  # fmt: skip
    return found[-1] if found else None


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
