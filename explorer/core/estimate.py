"""What a computation will cost before it runs: passes × a measured pass time, and memory.

Every long computation here is a known number of forward and backward passes over known
lengths, so its cost is counted in token-passes and priced with two timings measured once per
model and thread count on this machine (a one-token forward call: the fixed cost of a pass;
a 64-token forward: the cost per token). The counts follow the code that does the work:
- sampling: the prompt once per sample, then one batched step per new token;
- gradient methods (saliency, grad×input, integrated gradients per node): one forward of the
  text per row, and the backward of each target through its own prefix (`BACKWARD` × a forward);
- occlusion: one forward of the text per source position (an upper bound: prompt prefixes are
  shared where that pays); integrated gradients on the sequential path (the default): two;
- attribution over samples and cross-scoring: the same per sample, per model or scorer.

Adaptive integrated gradients are priced at their budget (an upper bound; targets that converge
early cost less). The app asks before anything estimated over `CONFIRM_SECONDS`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from explorer.core.family import Family
from explorer.core.member import Member, model_input
from explorer.core.samples import SampleSet
from explorer.core.threads import fair_share, get_threads

CONFIRM_SECONDS = 8.0  # the app asks "Run / Cancel" above this
# Calibrated on SmolLM2-135M and the fable zoo (benchmarks/bench_estimate.py reports the fit):
BACKWARD = 0.6  # a target's batched backward through its prefix, in batched forwards of it
DECODE = 1.5  # a sampling step (sampling, the growing cache) in forwards of one token
BIG_BATCH = 0.3  # occlusion's batches of tens of rows, per token, in batch-of-eight forwards
PROBE_TOKENS = 64
KINDS = ("sample", "attribute", "attribute_samples", "cross_score", "faithfulness")
_timings: dict[tuple[int, Any], tuple[float, float]] = {}


@dataclass(frozen=True)
class Estimate:
    """The expected cost of one computation on this machine (seconds None: not measurable here)."""

    what: str
    seconds: float | None
    token_passes: float  # forward-equivalent tokens in all
    memory_bytes: int  # the largest working set of one pass, weights included
    detail: str

    def __str__(self) -> str:
        if self.seconds is None:
            return f"{self.what}: {self.detail}"
        return f"≈ {format_seconds(self.seconds)} on this machine ({self.detail}; ≈ {self.memory_bytes / 2**20:.0f} MiB)"

    @property
    def long(self) -> bool:
        """Whether the app should ask before running it."""
        return self.seconds is not None and self.seconds > CONFIRM_SECONDS


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    return f"{seconds / 60:.0f} min"


def pass_timing(member: Member) -> tuple[float, float, float]:
    """(seconds per forward call, per token of one sequence, per token of a batch of eight) for
    this model with the thread policy now in force, measured once: medians of three forwards
    each of 1 × 1, 1 × 64 and 8 × 64 tokens. Batched tokens cost less: the matrix products
    are larger."""
    model = member.model
    key = (id(model), get_threads())
    if key not in _timings:
        vocab = len(member.tokenizer)
        with torch.no_grad(), fair_share([model]):
            one = _median_forward(model, torch.randint(0, vocab, (1, 1)))
            row = _median_forward(model, torch.randint(0, vocab, (1, PROBE_TOKENS)))
            batch = _median_forward(model, torch.randint(0, vocab, (8, PROBE_TOKENS)))
        per_row = max(row - one, 1e-9) / (PROBE_TOKENS - 1)
        _timings[key] = (one, per_row, max(batch - one, 1e-9) / (8 * PROBE_TOKENS - 1))
    return _timings[key]


def _median_forward(model: torch.nn.Module, ids: torch.Tensor) -> float:
    model(ids.to(model.device))  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model(ids.to(model.device))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class Counter:
    """Passes and tokens (of single sequences and of batches), priced per model."""

    calls: float = 0.0
    tokens: float = 0.0  # in single sequences
    batched: float = 0.0  # in batches of several rows (cheaper per token)
    memory: int = 0

    def forward(self, batch: int, length: float, repeat: float = 1.0) -> None:
        self.calls += repeat
        if batch > 1:
            self.batched += repeat * batch * length
        else:
            self.tokens += repeat * length

    @property
    def token_passes(self) -> float:
        return self.tokens + self.batched

    def seconds(self, timing: tuple[float, float, float]) -> float:
        call, per_token, per_batched = timing
        return self.calls * call + self.tokens * per_token + self.batched * per_batched


def activation_bytes(member: Member, batch: int, length: int) -> int:
    """Float32 working set of one pass: the hidden states of every layer and the logits."""
    config = getattr(member.model, "config", None)
    hidden = getattr(config, "hidden_size", 512)
    layers = getattr(config, "num_hidden_layers", 12)
    vocab = len(member.tokenizer)
    return 4 * batch * length * (8 * hidden * layers + vocab)


def n_tokens(member: Member, text: str, special: bool = False) -> int:
    return len(member.tokenizer(text, add_special_tokens=special)["input_ids"])


def sampling_counter(member: Member, prompt: str, n: int, max_new_tokens: int, chat: str) -> Counter:
    c = Counter()
    c.forward(n, n_tokens(member, model_input(member, prompt, chat), special=True))
    c.forward(n, 1, repeat=max_new_tokens * DECODE)
    c.memory = activation_bytes(member, n, 1) + kv_cache_bytes(member, n, c.token_passes / n)
    return c


def kv_cache_bytes(member: Member, batch: int, length: float) -> int:
    """Float32 keys and values of every layer for `batch` sequences of `length` tokens."""
    config = getattr(member.model, "config", None)
    hidden = getattr(config, "hidden_size", 512)
    layers = getattr(config, "num_hidden_layers", 12)
    return int(4 * 2 * layers * hidden * batch * length)


def attribution_counter(member: Member, prompt: str, response: str, chat: str, method: str,
                        sources: str = "all", **options: Any) -> Counter:  # fmt: skip
    """Passes of one model's attribution of `response` (see the module docstring)."""
    n_prompt = n_tokens(member, model_input(member, prompt, chat), special=True)
    n_resp = max(1, n_tokens(member, response))
    length = n_prompt + n_resp
    prefixes = n_resp * n_prompt + n_resp * (n_resp + 1) / 2  # Σ over targets of their prefix
    c = Counter()
    n_sources = n_prompt if sources == "prompt" else length
    if method in ("occlusion", "adaptation") or (method == "integrated_gradients" and sequential(options)):
        rows = n_sources + 1 if method != "integrated_gradients" else 2 * n_sources  # both staircases
        c.forward(rows, length * BIG_BATCH)
        c.memory = activation_bytes(member, min(rows, 64), length)
        return c
    if method in ("attention", "attention_rollout"):
        c.forward(1, length)
        c.memory = activation_bytes(member, 1, length)
        return c
    rows = 1
    if method == "integrated_gradients":
        rows = ig_nodes_per_target(member, options, n_resp, length)
    c.forward(rows, length)  # in chunks, one per group of targets
    c.calls += 1 if n_resp > 8 else 0
    c.batched += BACKWARD * rows * prefixes  # the targets' vector–Jacobian products, batched
    c.memory = activation_bytes(member, min(rows, 64), length) * 2
    return c


def faithfulness_counter(member: Member, prompt: str, response: str, chat: str) -> Counter:
    """The deletion and insertion curves of one model: the text, the text without its prompt,
    and two rows per level of k (`explorer.core.attribution.faithfulness`), in one batched pass."""
    from explorer.core.attribution.faithfulness import levels

    length = n_tokens(member, model_input(member, prompt, chat), special=True) + max(1, n_tokens(member, response))
    words = max(1, n_tokens(member, prompt))
    rows = 2 + 2 * len(levels(words)) + words
    c = Counter()
    c.forward(rows, length * BIG_BATCH)
    c.memory = activation_bytes(member, rows, length)
    return c


def sequential(options: dict) -> bool:
    """Whether integrated gradients take the sequential path (forward passes only)."""
    return options.get("path") == "sequential" or (options.get("path") is None and options.get("n_steps") is None)


def ig_nodes_per_target(member: Member, options: dict, n_targets: int, length: int) -> float:
    """Nodes per target that integrated gradients may use: `n_steps`, or the adaptive budget
    (an upper bound: targets that converge early use fewer)."""
    from explorer.core.attribution.ig import BUDGET, FLOOR_WORK, n_parameters

    steps = options.get("n_steps")
    steps = "adaptive" if steps is None else steps
    if isinstance(steps, int):
        return steps
    budget, most = options.get("budget", BUDGET), options.get("max_steps", 1024) + 1
    if budget is None:
        return most
    floor = FLOOR_WORK // (n_parameters(member.model) * length)
    return min(most, max(budget * n_targets, floor) / n_targets)


def estimate(
    family: Family,
    what: str,
    *,
    prompt: str | None = None,
    response: str | None = None,
    samples: SampleSet | None = None,
    models: list[str] | None = None,
    method: str = "integrated_gradients",
    n: int = 16,
    max_new_tokens: int = 24,
    chat: str = "auto",
    max_samples: int | None = None,
    **options: Any,
) -> Estimate:
    """The expected seconds and memory of `what` — "sample", "attribute", "attribute_samples",
    "cross_score" or "faithfulness" (`Attribution.faithfulness`) — called with the same
    arguments, on this machine, now.

    Measures each model's pass time once (a fraction of a second on a 135M-parameter model)
    and counts passes from the lengths involved. Served members are priced by their server,
    not here: their share is reported as unknown."""
    labels = models or (samples.models if samples is not None and what != "sample" else family.labels)
    jobs = _jobs(what, labels, prompt, response, samples, method, n, max_new_tokens, chat, max_samples, options)
    total = token_passes = 0.0
    memory, served = 0, []
    for label, counter_fn in jobs:
        member = family.load(label)
        if not member.has_weights:
            served.append(label)
            continue
        c = counter_fn(member)
        total += c.seconds(pass_timing(member))
        token_passes += c.token_passes
        memory = max(memory, member.n_bytes + c.memory)
    detail = _detail(what, labels, method, len(jobs))
    if served:
        detail += f"; {', '.join(dict.fromkeys(served))} served elsewhere, not counted"
    seconds = None if served and not token_passes else total
    return Estimate(what, seconds, token_passes, memory, detail)


def _jobs(what, labels, prompt, response, samples, method, n, max_new_tokens, chat, max_samples, options):
    """(label, counter function) per unit of work."""
    if what not in KINDS:
        raise ValueError(f"what: 'sample', 'attribute', 'attribute_samples', 'cross_score' or 'faithfulness', got {what!r}")
    if what == "sample":
        _need(prompt, "prompt", what)
        return [(m, lambda mb: sampling_counter(mb, prompt, n, max_new_tokens, chat)) for m in labels]
    if what in ("attribute", "faithfulness"):
        _need(prompt, "prompt", what)
        _need(response, "response", what)
        if what == "faithfulness":
            return [(m, lambda mb: faithfulness_counter(mb, prompt, response, chat)) for m in labels]
        return [(m, lambda mb: attribution_counter(mb, prompt, response, chat, method, **options)) for m in labels]
    if samples is None:
        raise ValueError(f"samples: estimating {what} needs the SampleSet it would run on")
    chat = samples.params.chat
    if what == "attribute_samples":
        return [(m, lambda mb, t=t: attribution_counter(mb, samples.prompt, t, chat, method, **options))
                for m in labels for t in [t for t in samples.texts(m) if t.strip()][:max_samples]]  # fmt: skip
    texts = [t for m in samples.models for t in samples.texts(m)]  # cross_score
    return [(m, lambda mb: _scoring_counter(mb, samples.prompt, texts, chat)) for m in labels]


def _scoring_counter(member: Member, prompt: str, texts: list[str], chat: str) -> Counter:
    c = Counter()
    n_prompt = n_tokens(member, model_input(member, prompt, chat), special=True)
    c.forward(1, n_prompt)  # the shared prefix, once
    c.forward(len(texts), 1 + max((n_tokens(member, t) for t in texts), default=0))
    c.memory = activation_bytes(member, min(len(texts), 64), n_prompt)
    return c


def _need(value: Any, name: str, what: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name}: estimating {what} needs the {name} text")


def _detail(what: str, labels: list[str], method: str, units: int) -> str:
    models = f"{len(set(labels))} model{'s' if len(set(labels)) != 1 else ''}"
    if what == "attribute":
        return f"{method} in {models}"
    if what == "attribute_samples":
        return f"{method} over {units} samples in {models}"
    if what == "cross_score":
        return f"scoring every sample under {models}"
    if what == "faithfulness":
        return f"deletion and insertion curves in {models}"
    return f"sampling {models}"
