"""What a computation will cost before it runs: passes × measured prices, and memory.

Every long computation here is a known number of forward and backward passes over known
lengths, so its cost is counted in calls, tokens through the model's blocks and positions of
its output head, and priced with four timings measured once per model shape and thread count
on this machine (`explorer.core.timing`: small partial passes, a few percent of the work they
price). The counts follow the code that does the work:
- sampling: the prompt once per sample, then one batched step per new token (the head at one
  position per sample and step);
- gradient methods (saliency, grad×input, integrated gradients per node): one forward of the
  text per row, the head only at the targets, and the backward of each target through its own
  prefix (`BACKWARD` × a forward);
- occlusion: one forward of the text per source position (an upper bound: prompt prefixes are
  shared where that pays); integrated gradients on the sequential path (the default): two;
- attribution over samples and cross-scoring: the same per sample, per model or scorer
  (scoring keeps the head at every response position).

Adaptive integrated gradients are priced at their budget (an upper bound; targets that converge
early cost less). The app asks before anything estimated over `CONFIRM_SECONDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from explorer.core import timing
from explorer.core.family import Family
from explorer.core.member import Member, model_input
from explorer.core.samples import SampleSet
from explorer.core.threads import fair_share
from explorer.core.timing import Timing

CONFIRM_SECONDS = 8.0  # the app asks "Run / Cancel" above this
# Calibrated on SmolLM2-135M and the fable zoo (benchmarks/bench_estimate.py reports the fit):
BACKWARD = 0.75  # a target's batched backward through its prefix, in batched forwards of its blocks
# (0.6 when a token's price included the head at every position: 0.6 × 1.27 on SmolLM2-135M)
DECODE = 1.5  # a sampling step (sampling, the growing cache) in forwards of one token
BIG_BATCH = 0.3  # occlusion's batches of tens of rows, per token, in batch-of-eight forwards
LOGIT_BOUND = 50_000_000  # floats of logits one pass holds at most (teacher.MAX_ELEMENTS)
KINDS = ("sample", "attribute", "attribute_samples", "cross_score", "faithfulness")


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


def pass_timing(member: Member, batched: bool = False) -> Timing:
    """The member's prices (`timing.Timing`) with the thread share it would get now."""
    with fair_share([member.model], batched=batched) as threads:
        return timing.measure(member, threads)


@dataclass
class Counter:
    """Calls, tokens through the blocks (of single sequences and of batches) and head
    positions, priced per model."""

    calls: float = 0.0
    tokens: float = 0.0  # in single sequences
    batched: float = 0.0  # in batches of several rows (cheaper per token)
    heads: float = 0.0  # output-head positions beyond one per call
    memory: int = 0

    def forward(self, batch: int, length: float, repeat: float = 1.0, heads: float = 1.0) -> None:
        """`repeat` passes of `batch` rows × `length` tokens, the head at `heads` positions
        per row."""
        self.calls += repeat
        self.heads += repeat * max(batch * heads - 1, 0)
        if batch > 1:
            self.batched += repeat * batch * length
        else:
            self.tokens += repeat * length

    def add(self, other: Counter) -> None:
        """Count `other`'s passes here too (its memory is not a sum: callers take maxima)."""
        self.calls, self.tokens, self.batched = self.calls + other.calls, self.tokens + other.tokens, self.batched + other.batched
        self.heads += other.heads

    @property
    def token_passes(self) -> float:
        return self.tokens + self.batched

    def seconds(self, prices: Timing) -> float:
        return (self.calls * prices.call + self.tokens * prices.token + self.batched * prices.batched
                + self.heads * prices.head)  # fmt: skip


def activation_bytes(member: Member, batch: int, length: int, heads: int | None = None) -> int:
    """Float32 working set of one pass: the hidden states of every layer and the logits at
    `heads` positions per row (default: every position), which the work holds at most
    LOGIT_BOUND floats of at once (`explorer.core.teacher.MAX_ELEMENTS`)."""
    config = getattr(member.model, "config", None)
    hidden = getattr(config, "hidden_size", 512)
    layers = getattr(config, "num_hidden_layers", 12)
    vocab = len(member.tokenizer)
    logits = min(batch * (length if heads is None else heads) * vocab, LOGIT_BOUND)
    return 4 * (batch * length * 8 * hidden * layers + logits)


def n_tokens(member: Member, text: str, special: bool = False) -> int:
    return len(member.tokenizer(text, add_special_tokens=special)["input_ids"])


def sampling_counter(member: Member, prompt: str, n: int, max_new_tokens: int, chat: str) -> Counter:
    c = Counter()
    c.forward(n, n_tokens(member, model_input(member, prompt, chat), special=True))  # logits at the end
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
        c.forward(rows, length * BIG_BATCH, heads=n_resp)  # logits at the targets only
        c.memory = activation_bytes(member, min(rows, 64), length, heads=n_resp)
        return c
    if method in ("attention", "attention_rollout"):
        c.forward(1, length)
        c.memory = activation_bytes(member, 1, length, heads=1)
        return c
    rows = 1
    if method == "integrated_gradients":
        rows = ig_nodes_per_target(member, options, n_resp, length)
    c.forward(rows, length, heads=n_resp)  # in chunks, one per group of targets
    c.calls += 1 if n_resp > 8 else 0
    c.batched += BACKWARD * rows * prefixes  # the targets' vector–Jacobian products, batched
    c.heads += rows * n_resp  # the head's backward, once per target (`HeadCut`)
    c.memory = activation_bytes(member, min(rows, 64), length, heads=n_resp) * 2
    return c


def faithfulness_counter(member: Member, prompt: str, response: str, chat: str) -> Counter:
    """The deletion and insertion curves of one model: the text, the text without its prompt,
    and two rows per level of k (`explorer.core.attribution.faithfulness`), in one batched pass."""
    from explorer.core.attribution.faithfulness import levels

    n_resp = max(1, n_tokens(member, response))
    length = n_tokens(member, model_input(member, prompt, chat), special=True) + n_resp
    words = max(1, n_tokens(member, prompt))
    rows = 2 + 2 * len(levels(words)) + words
    c = Counter()
    c.forward(rows, length * BIG_BATCH, heads=n_resp)  # logits at the response only
    c.memory = activation_bytes(member, rows, length, heads=n_resp)
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
        total += c.seconds(pass_timing(member, batched=what != "sample"))
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
    longest = 1 + max((n_tokens(member, t) for t in texts), default=0)
    c.forward(len(texts), longest, heads=longest)  # log-probs at every response position
    c.memory = activation_bytes(member, min(len(texts), 64), n_prompt + longest)
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
