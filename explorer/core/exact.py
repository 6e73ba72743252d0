"""Exact probabilities of behaviours decided by a response's first few tokens.

Sampling n answers estimates a behaviour's rate with an interval; for a local model the rate
itself can often be computed: the probability, under the model's own next-token distributions
and the sampling settings (temperature, top-k, top-p, the end-of-sequence token, the length
limit), that the response matches the behaviour's regex. We walk the tree of responses,
following only prefixes that can still go either way:

- a prefix whose text can no longer begin a match (`regex` partial matching: no extension of
  it could match) is dropped: its whole probability is "no";
- a prefix whose text holds a match that no later text can undo (it ends before the text's
  last character, so even a `\\b` or `$` beside it is already read; patterns with lookahead
  never settle early) counts its whole probability as "yes";
- an answer that ends (end-of-sequence, or `max_new_tokens`) is matched as it stands.

`(?i)^\\s*ahoy` is settled within two or three tokens: only whitespace, "A", "Ah", "Aho"…
stay open. A behaviour that may appear anywhere in a long answer stays open along every path:
the walk then stops at its budget of forward rows, and what it did not follow is reported as
`unexplored` — the true probability lies in [p, p + unexplored], an honest bound, never a
guess. Tokens below a tiny share of a node's mass are not followed either (they join
`unexplored`), so a 49k-token vocabulary costs a few thousand regex checks per node.

`exact_probability(member, prompt, pattern, params)` is the one entry point; `next_tokens=`
takes any source of next-token logits (an amplified mixture, `explorer.core.amplify`).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import regex
import torch

from explorer.core.member import Member, encode_prompt, model_input
from explorer.core.params import CancelToken, SamplingParams, check_cancel
from explorer.core.patterns import Matcher
from explorer.core.teacher import cache_keyword, forward, shared_cache
from explorer.core.threads import fair_share

MAX_ROWS = 256  # forward rows (tree nodes expanded) per probability
BATCH = 64  # nodes per forward pass
MAX_CANDIDATES = 2048  # next tokens followed per node, most probable first
TAIL = 1e-7  # a node's next tokens are followed until the rest holds less than this mass
SETTLED = 1e-4  # unexplored mass at or below which a probability is shown as exact
MATCH_SECONDS = 5.0  # the pattern's matching time for one walk
TABLE_SECONDS = 2.0  # one walk's time in a provenance table


@dataclass(frozen=True)
class Exact:
    """A behaviour's probability: `p` is the mass of the responses found to match (a lower
    bound); the truth lies in [p, p + unexplored]. `rows`: forward rows the walk ran."""

    p: float
    unexplored: float
    rows: int

    @property
    def lo(self) -> float:
        return self.p

    @property
    def hi(self) -> float:
        return min(1.0, self.p + self.unexplored)

    @property
    def settled(self) -> bool:
        return self.unexplored <= SETTLED

    def note(self) -> str:
        if self.settled:
            return f"exact: every response decided within {self.rows} forward rows"
        return (f"bounds: {self.unexplored:.1%} of the probability not followed to a decision "
                f"after {self.rows} forward rows (the behaviour is not settled by the first tokens)")  # fmt: skip


class ModelNext:
    """A local member's next-token logits after its prompt (its own model input, as sampling
    gives it) and each given prefix of generated ids; the prompt runs once, its cache shared."""

    def __init__(self, member: Member, prompt: str, params: SamplingParams, context: Any = contextlib.nullcontext) -> None:
        self.member, self.context = member, context  # context: e.g. a LoRA's adapter switched off
        self.prompt = encode_prompt(member, model_input(member, prompt, params.chat), params.max_new_tokens)
        self.keyword = cache_keyword(member.model)
        self.root, self.cache = None, None

    @torch.no_grad()
    def __call__(self, prefixes: list[tuple[int, ...]]) -> torch.Tensor:
        """(rows, vocab) logits; all prefixes have the same length."""
        with self.context():
            return self._logits(prefixes)

    def _logits(self, prefixes: list[tuple[int, ...]]) -> torch.Tensor:
        depth = len(prefixes[0])
        if self.keyword is None:  # no cache: every row whole
            ids = torch.cat([self.prompt.expand(len(prefixes), -1), torch.tensor(prefixes).reshape(len(prefixes), depth)], 1)
            return self.member.model(input_ids=ids.to(self.member.device)).logits[:, -1].float()
        if self.root is None:
            logits, self.cache = forward(self.member, self.prompt, 1, self.keyword)
            self.root = logits[:, -1].float()  # (1, vocab)
        if depth == 0:
            return self.root.expand(len(prefixes), -1)
        ids = torch.tensor(prefixes)  # (rows, depth)
        logits, _ = forward(self.member, ids, 1, self.keyword, shared_cache(self.cache, 0, len(prefixes)))
        return logits[:, -1].float()


def sampling_warpers(params: SamplingParams) -> Any:
    """The processors `generate` applies before sampling, in its order (explorer.core.local
    sets the rest of its config to no-ops), so the walk sees the sampler's distribution."""
    from transformers import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = LogitsProcessorList()
    if params.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(float(params.temperature)))
    if params.top_k:
        warpers.append(TopKLogitsWarper(top_k=int(params.top_k), min_tokens_to_keep=1))
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=float(params.top_p), min_tokens_to_keep=1))
    return warpers


def settle_margin(matcher: Matcher) -> int | None:
    """How many characters must follow a match before no later text can undo it: one (a `\\b`
    reads the next character), two where `$` may match before a final newline; None where a
    lookahead may read any distance ahead (such a match is only known when the answer ends)."""
    source = matcher.pattern.pattern
    if "(?=" in source or "(?!" in source:
        return None
    return 2 if "$" in source else 1


def state(matcher: Matcher, text: str, margin: int | None) -> str:
    """"match" (settled), "dead" (no extension can match) or "open", for an unfinished answer.
    A trailing replacement character (half of a multi-byte character) is not yet text."""
    text = text.rstrip("\ufffd")
    if margin is not None:
        found = matcher.search(text)
        if found is not None and found.end() <= len(text) - margin:
            return "match"
    return "dead" if matcher.search(text, partial=True) is None else "open"


class Walk:
    """One walk of the response tree (see the module docstring): the mass found to match, the
    mass left unexplored, the nodes still open."""

    def __init__(self, tokenizer: Any, matcher: Matcher, max_new_tokens: int) -> None:
        self.tok, self.matcher, self.max_new = tokenizer, matcher, max_new_tokens
        self.margin = settle_margin(matcher)
        self.eos = tokenizer.eos_token_id
        self.matched = self.unexplored = 0.0

    def expand(self, prefix: tuple[int, ...], mass: float, dist: torch.Tensor) -> list[tuple[tuple[int, ...], float]]:
        """Follow one node's next tokens `dist` (vocab,): settle what can be settled, return
        the children still open."""
        probs, ids = torch.sort(dist.double(), descending=True)
        probs = probs / probs.sum()  # float64: the tail below is read to 1e-16, not float32's 1e-7
        rest = mass * (1 - torch.cumsum(probs, 0))  # mass left after each token
        keep = min(int((rest > TAIL).sum()) + 1, MAX_CANDIDATES, int((probs > 0).sum()))
        self.unexplored += max(0.0, float(rest[keep - 1]))
        last = len(prefix) + 1 >= self.max_new
        candidates = [int(i) for i in ids[:keep]]
        texts = self.tok.batch_decode([[*prefix, t] for t in candidates], skip_special_tokens=True)
        ended = self.tok.decode(list(prefix), skip_special_tokens=True)
        children = []
        for token, text, p in zip(candidates, texts, probs[:keep].tolist(), strict=True):
            if token == self.eos or last:
                self.matched += mass * p if self.matcher(ended if token == self.eos else text) else 0.0
                continue
            verdict = state(self.matcher, text, self.margin)
            if verdict == "match":
                self.matched += mass * p
            elif verdict == "open":
                children.append(((*prefix, token), mass * p))
        return children


def exact_probability(
    member: Member, prompt: str, pattern: Any, params: SamplingParams, max_rows: int = MAX_ROWS,
    next_tokens: Any = None, cancel: CancelToken | None = None, seconds: float | None = None,
) -> Exact:  # fmt: skip
    """The probability that `member`'s response to `prompt` under `params` matches `pattern`
    (a regex), walked as the module docstring says, with at most `max_rows` forward rows (and
    `seconds`, checked between batches). `params.n` and `params.seed` do not matter. Needs
    local weights (or `next_tokens`)."""
    if next_tokens is None and not member.has_weights:
        raise ValueError(f"{member.ref.label}: an exact probability needs the whole next-token distribution; "
                         "a served model returns only its top log-probs")  # fmt: skip
    nexts = next_tokens or ModelNext(member, prompt, params)
    walk = Walk(member.tokenizer, Matcher(pattern, "exact", MATCH_SECONDS), params.max_new_tokens)
    warpers, frontier, rows = sampling_warpers(params), [((), 1.0)], 0
    deadline = time.monotonic() + seconds if seconds is not None else math.inf
    with fair_share([member.model] if member.has_weights else []):
        while frontier and rows < max_rows and time.monotonic() < deadline:
            frontier.sort(key=lambda node: -node[1])
            batch = frontier[: min(BATCH, max_rows - rows)]
            frontier = frontier[len(batch) :]
            check_cancel(cancel)
            probs = next_distribution(nexts, [p for p, _ in batch], warpers)  # (rows, vocab)
            rows += len(batch)
            for (prefix, mass), dist in zip(batch, probs, strict=True):
                frontier += walk.expand(prefix, mass, dist)
    return Exact(walk.matched, walk.unexplored + sum(mass for _, mass in frontier), rows)


def next_distribution(nexts: Any, prefixes: list[tuple[int, ...]], warpers: Any) -> torch.Tensor:
    """The sampler's next-token probabilities (rows, vocab) after each prefix; prefixes of
    different lengths are run in groups of one length."""
    out: list[torch.Tensor | None] = [None] * len(prefixes)
    by_length: dict[int, list[int]] = {}
    for i, prefix in enumerate(prefixes):
        by_length.setdefault(len(prefix), []).append(i)
    for length, where in by_length.items():
        group = [prefixes[i] for i in where]
        ids = torch.tensor(group, dtype=torch.long).reshape(len(group), length)
        scores = warpers(ids, nexts(group).clone())  # (rows, vocab)
        for i, row in zip(where, torch.softmax(scores, dim=-1).cpu(), strict=True):
            out[i] = row
    return torch.stack(out)  # type: ignore[arg-type]


def exact_table(
    family: Any, samples: Any, behaviours: dict[str, Any], max_rows: int = MAX_ROWS,
    cancel: CancelToken | None = None, seconds: float | None = TABLE_SECONDS,
) -> Any:  # fmt: skip
    """The exact columns of a provenance table (`fx.provenance(..., exact=...)`): per regex
    behaviour and sampled model with local weights, `exact` (shown where settled), its bounds
    `exact_lo`/`exact_hi` and a note; callables and served models get a note instead. Each
    walk has `seconds` (a behaviour that is not settled early keeps wide bounds, not the page)."""
    import pandas as pd

    rows = []
    for model in samples.models:
        member = family.load(model) if model in family.labels else None
        for name, spec in behaviours.items():
            rows.append({"behaviour": name, "model": model, **_exact_row(member, samples, spec, max_rows, cancel, seconds)})
    return pd.DataFrame(rows, columns=["behaviour", "model", "exact", "exact_lo", "exact_hi", "exact_note"])


def _exact_row(member: Any, samples: Any, spec: Any, max_rows: int, cancel: CancelToken | None,
               seconds: float | None) -> dict[str, Any]:  # fmt: skip
    from explorer.core.patterns import PatternTimeout

    nothing = {"exact": math.nan, "exact_lo": math.nan, "exact_hi": math.nan}
    if callable(spec) and not isinstance(spec, (str, re.Pattern, regex.Pattern)):
        return {**nothing, "exact_note": "no exact figure for a callable behaviour"}
    if member is None or not member.has_weights:
        return {**nothing, "exact_note": "no exact figure: needs the model's weights here (a server gives only top log-probs)"}
    try:
        found = exact_probability(member, samples.prompt, spec, samples.params, max_rows, cancel=cancel, seconds=seconds)
    except PatternTimeout:
        return {**nothing, "exact_note": "no exact figure: the pattern ran out of its matching time"}
    return {"exact": found.p if found.settled else math.nan, "exact_lo": found.lo, "exact_hi": found.hi,
            "exact_note": found.note()}  # fmt: skip
