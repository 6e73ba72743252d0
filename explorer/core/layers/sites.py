"""Patched forward passes, batched: every (layer, position) site in a few passes, not a loop.

Each row of a batch is the receiver's forward pass with one site (or one layer at every
position) taking the donor's activation; a forward hook per block swaps in the donor's tensor
where that row's mask says so. The attribution-patching preview is one forward and one backward
pass of the receiver: the first-order estimate (a_donor − a_receiver) · ∂M/∂a of every site.
"""

from __future__ import annotations

from typing import Any

import torch

from explorer.core.attribution.gradients import frozen
from explorer.core.layers.anatomy import Anatomy, hooked, output_of, with_output
from explorer.core.member import Member
from explorer.core.params import CancelToken, check_cancel
from explorer.core.teacher import embeds_input, predicting_logits, token_logprobs

ALL = -1  # a site's position when the layer is patched at every position
UNPATCHED = (-1, -2)  # a row that takes nothing from the donor
ROW_BYTES = 256 * 2**20  # what one batch of patched passes may hold in activations and logits


def response_logprobs(member: Member, ids: torch.Tensor, start: int, **inputs: Any) -> torch.Tensor:
    """log p of each response token (batch, targets) for sequences `ids` (batch, seq) whose
    response begins at `start`, with logits only where they predict the response; `inputs`
    (e.g. `inputs_embeds`, so that gradients reach them) replace the ids as the model's input."""
    positions = torch.arange(start - 1, ids.shape[1])  # the last one predicts past the text
    inputs = inputs or {"input_ids": ids.to(member.device)}
    logits = predicting_logits(member.model, positions, use_cache=False, **inputs)[:, :-1]
    return token_logprobs(logits, ids[:, start:].to(logits.device))  # (batch, targets)


def rows_per_pass(body: Anatomy, seq: int, n_targets: int, vocab: int) -> int:
    """How many patched rows one forward pass takes: activations and logits within ROW_BYTES."""
    per_row = 4 * (seq * body.hidden * 8 + (n_targets + 1) * vocab * 2)
    return max(2, min(512, ROW_BYTES // per_row))


def patched_passes(
    receiver: Member,
    body: Anatomy,
    site: str,
    ids: torch.Tensor,
    start: int,
    donor: list[torch.Tensor],
    sites: list[tuple[int, int]],
    done=None,
    cancel: CancelToken | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Response log-probs (sites, targets) of the receiver with each site's activation taken
    from `donor` (layers × (1, seq, hidden)), and beside each the unpatched receiver's from the
    same pass (a pass's first row is left unpatched): a difference of rows computed together is
    exactly 0 where the patch changed nothing. `done(n_done, n_total)` after each pass."""
    seq = ids.shape[0]
    step = pass_rows(body, ids, start, len(sites)) - 1
    modules = [body.site(layer, site) for layer in range(len(body.blocks))]
    patched, plain = [], []
    for begin in range(0, len(sites), step):
        check_cancel(cancel)
        chunk = sites[begin : begin + step]
        rows = [UNPATCHED, *chunk] + [UNPATCHED] * (step - len(chunk))  # every pass one shape
        masks = site_masks(rows, len(modules), seq)  # (layers, rows, seq)
        swap = lambda i, o, m=masks: swapped(o, donor[i], m[i])  # noqa: E731
        with torch.no_grad(), hooked(modules, swap):
            out = response_logprobs(receiver, ids.expand(len(rows), -1), start).cpu()
        patched.append(out[1 : 1 + len(chunk)])
        plain.append(out[:1].expand(len(chunk), -1))
        if done:
            done(begin + len(chunk), len(sites))
    return torch.cat(patched), torch.cat(plain)


def pass_rows(body: Anatomy, ids: torch.Tensor, start: int, n_sites: int) -> int:
    """The batch size of every patched pass (an unpatched row and up to that many sites − 1);
    the donor's activations are taken at the same batch size, so that a site whose activation
    equals the receiver's gives bit-for-bit the receiver's log-probs."""
    seq = ids.shape[0]
    return min(rows_per_pass(body, seq, seq - start, body.head.weight.shape[0]), n_sites + 1)


def site_masks(sites: list[tuple[int, int]], n_layers: int, seq: int) -> torch.Tensor:
    """(layers, rows, seq) True where row r takes the donor's activation at that layer."""
    masks = torch.zeros(n_layers, len(sites), seq, dtype=torch.bool)
    for row, (layer, position) in enumerate(sites):
        if (layer, position) == UNPATCHED:
            continue
        if position == ALL:
            masks[layer, row] = True
        else:
            masks[layer, row, position] = True
    return masks


def swapped(out: Any, donor: torch.Tensor, mask: torch.Tensor) -> Any:
    """A block's output with the donor's (1, seq, hidden) where `mask` (rows, seq) says."""
    if not mask.any():
        return None
    hidden = output_of(out)  # (rows, seq, hidden)
    mask = mask.to(hidden.device)[..., None]
    return with_output(out, torch.where(mask, donor.to(hidden.dtype).expand_as(hidden), hidden))


def preview_effects(
    receiver: Member, body: Anatomy, site: str, ids: torch.Tensor, start: int,
    donor: list[torch.Tensor],
) -> torch.Tensor:  # fmt: skip
    """Attribution patching: the estimated change (layers, seq) of the summed response log-prob
    when each site takes the donor's activation, from one forward and one backward pass."""
    modules = [body.site(layer, site) for layer in range(len(body.blocks))]
    kept: list[torch.Tensor | None] = [None] * len(modules)

    def keep(i: int, out: Any) -> None:
        kept[i] = output_of(out)

    model = receiver.model
    with torch.enable_grad(), frozen(model), hooked(modules, keep):
        embeds = model.get_input_embeddings()(ids[None].to(receiver.device)).detach()
        embeds.requires_grad_(True)  # a leaf at the input: every block output joins the graph
        total = response_logprobs(receiver, ids[None], start, **embeds_input(model, embeds, ids)).sum()
        acts = [k for k in kept if k is not None]
        grads = torch.autograd.grad(total, acts)
    rows = [((d.to(a.dtype) - a.detach()) * g).sum(-1)[0] for d, a, g in zip(donor, acts, grads, strict=True)]
    return torch.stack(rows).float().cpu()  # (layers, seq)

