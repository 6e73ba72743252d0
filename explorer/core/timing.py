"""What a forward pass costs on this machine, measured once per model shape with small probes.

`fx.estimate` prices work in four units: a forward call (its fixed cost: reading every weight
once, dispatching every module), a token through the model's blocks (of one sequence, or of a
batch of several rows), and a position of the output head. The head is priced on its own
because the work keeps logits only where it needs them (`logits_to_keep`), and at a 262k
vocabulary one head position costs more than a token through all the blocks of a 270M model.

Measuring whole forward passes would cost what the work costs (the first estimate on a
Gemma-3-270M-shaped model took 17.8 s to price a 1.7 s run: its probes ran the full head at
8 × 64 positions). So the probes are small and partial:
- the model runs its first block only (a pre-hook on the second block stops the pass), for
  1 × 1, 1 × 16 and 4 × 16 tokens, and stops before its first block for 1 × 1: the
  difference is one block's cost, times the number of blocks;
- the head runs on slices of its rows, scaled to the whole vocabulary: 64 MiB of them at one
  position (reading weights), HEAD_ROWS at 1 and 32 positions (multiplying them).
Each is the faster of two runs, after one warm-up pass (a run disturbed by another process is
slower, never faster). Timings are kept per model shape (architecture, sizes and parameter
count, dtype, device) and thread count: a family's full fine-tunes share the base's, a LoRA
descendant (its extra products cost a little on every call) is measured apart. Models whose
blocks cannot be found are probed whole.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from explorer.core.member import Member, plain_model

SHAPES = ((1, 16), (4, 16))  # (rows, tokens) of the block probes, beside 1 × 1
HEAD_ROWS = 4096  # vocabulary rows of the head probe…
HEAD_POSITIONS = 32  # …and the positions it runs at (work runs the head at tens to hundreds)
HEAD_BYTES = 64 * 2**20  # weights read by the one-position probe: more than a cache holds
_timings: dict[tuple, Timing] = {}


@dataclass(frozen=True)
class Timing:
    """Seconds: a forward call of one token (the head at one position included), a token
    through the blocks (one sequence; a batch of several rows), one more head position."""

    call: float
    token: float
    batched: float
    head: float


class _Stop(Exception):
    """Raised by the probe's pre-hook to end a forward pass after the blocks it needs."""


def shape_key(member: Member, threads: int) -> tuple:
    """What a forward pass's cost depends on: architecture, sizes, dtype, device, threads."""
    model = plain_model(member.model)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    sizes = tuple(getattr(config, k, None) for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                      "num_attention_heads", "num_key_value_heads", "vocab_size"))  # fmt: skip
    weight = model.get_input_embeddings().weight
    return (type(model).__name__, sizes, sum(p.numel() for p in model.parameters()), weight.dtype,
            str(weight.device), threads)  # fmt: skip


# The probes time passes of microseconds to milliseconds: another thread of this process that
# holds the GIL meanwhile (the app importing altair after a family loads: 1.5–2.5 s of Python)
# made them read 16× too long, and the prices are kept. Such work holds this lock, and so do
# the probes, so that no price is measured while it runs.
QUIET = threading.Lock()


def measure(member: Member, threads: int) -> Timing:
    """The member's timing at `threads` (the caller's fair share), measured on first use."""
    key = shape_key(member, threads)
    if key not in _timings:
        with QUIET, torch.no_grad():
            _timings[key] = probe(member)
    return _timings[key]


def probe(member: Member) -> Timing:
    """The four prices from partial passes (module docstring)."""
    blocks = _blocks(member)
    depth = 1 if blocks else None  # blocks run by a probe (None: the whole model)
    layers = len(blocks) if blocks else 1
    _partial(member, blocks, depth, 1, 1)  # warm-up: first calls pay for allocation
    start = _fastest(lambda: _partial(member, blocks, 0, 1, 1)) if blocks else 0.0
    one = max(_fastest(lambda: _partial(member, blocks, depth, 1, 1)) - start, 0.0)  # one token, one block
    per_block = [
        max(_fastest(lambda r=r, t=t: _partial(member, blocks, depth, r, t)) - start - one, 0.0) / (r * t - 1)
        for r, t in SHAPES
    ]  # fmt: skip
    head_one, head_more = head_timing(member.model)
    head_one = head_one if blocks else 0.0  # a whole pass ran the head at one position
    return Timing(call=start + layers * one + head_one, token=layers * per_block[0],
                  batched=layers * per_block[1], head=head_more)  # fmt: skip


def _blocks(member: Member) -> list[torch.nn.Module] | None:
    from explorer.core.layers.anatomy import anatomy

    try:
        blocks = anatomy(member).blocks
    except (ValueError, AttributeError, TypeError):
        return None
    return blocks if len(blocks) > 1 else None


def _partial(member: Member, blocks: list | None, depth: int | None, rows: int, tokens: int) -> None:
    """A forward pass of `rows` × `tokens` ids that stops before block `depth` (the whole
    pass, logits at one position, where `depth` is None)."""
    model = member.model
    ids = torch.zeros((rows, tokens), dtype=torch.long, device=member.device)
    if depth is None:
        model(input_ids=ids, use_cache=False, logits_to_keep=1)
        _wait(ids.device)
        return
    handle = blocks[depth].register_forward_pre_hook(_raise)
    try:
        model(input_ids=ids, use_cache=False, logits_to_keep=1)
    except _Stop:
        pass
    finally:
        handle.remove()
    _wait(ids.device)


def _wait(device: torch.device) -> None:
    """On a GPU, the work queued so far finished (what a timer around it should see)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _raise(module, args) -> None:
    raise _Stop


def head_timing(model: Any) -> tuple[float, float]:
    """Seconds of the head at one position and per further position, each from a slice of its
    rows scaled to the whole vocabulary: one position reads every weight once (memory-bound:
    the slice is HEAD_BYTES, more than a cache holds), more positions multiply (compute-bound:
    HEAD_ROWS rows at HEAD_POSITIONS positions)."""
    weight = model.get_output_embeddings().weight  # (vocab, hidden)
    row_bytes = weight.shape[1] * weight.element_size()
    wide = weight[: min(weight.shape[0], max(HEAD_ROWS, HEAD_BYTES // row_bytes))]
    narrow = weight[: min(HEAD_ROWS, weight.shape[0])]
    x = torch.zeros((HEAD_POSITIONS, weight.shape[1]), dtype=weight.dtype, device=weight.device)
    F.linear(x, narrow)  # warm-up
    one = _fastest(lambda: _wait(F.linear(x[:1], wide).device)) * weight.shape[0] / wide.shape[0]
    many = _fastest(lambda: _wait(F.linear(x, narrow).device))
    few = _fastest(lambda: _wait(F.linear(x[:1], narrow).device))
    return one, max(many - few, 0.0) / (HEAD_POSITIONS - 1) * weight.shape[0] / narrow.shape[0]


def _fastest(fn, runs: int = 2) -> float:
    """The shortest of `runs` timed calls."""
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - began)
    return best
