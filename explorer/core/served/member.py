"""`ServedMember`: the member protocol over an OpenAI-compatible server.

Sampling sends every chunk of samples as its own request, all in flight at once on the
backend's bounded pool (the server batches them); scoring is teacher-forced (`echo` with
`max_tokens=0`). Per-token log-probs are the engine's raw ones and entropies are lower bounds
from its top-k log-probs: `engine()` says so, and results carry it in their metadata.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from explorer.core.errors import ModelLoadError
from explorer.core.member import ModelSamples, encode_prompt, model_input
from explorer.core.params import CancelToken, ProgressFn, SamplingParams, check_cancel, model_seed
from explorer.core.refs import ModelRef
from explorer.core.responses import response_row
from explorer.core.served.backend import OpenAIBackend, backend_for
from explorer.core.served.tokenizer import RemoteTokenizer, token_id
from explorer.core.tokens import token_texts

TOP_LOGPROBS = 20  # vLLM's default --max-logprobs
PER_REQUEST = 16  # samples per sampling request


@dataclass
class ServedMember:
    """A served member: no local weights, so only forward-only analyses are possible."""

    ref: ModelRef
    backend: OpenAIBackend
    tokenizer: RemoteTokenizer
    context_length: int
    base_id: str

    n_bytes = 0
    model = None
    has_weights = False
    concurrent = True  # the server batches requests from many members

    @property
    def name(self) -> str:
        """The model name the server knows (the LoRA adapter's name for a descendant)."""
        return self.ref.id

    @property
    def tokenizer_key(self) -> Hashable:
        return ("served", self.backend.base_url, self.base_id)  # adapters share the base's

    def engine(self) -> dict[str, Any]:
        return {
            "server": self.backend.base_url, "engine_version": self.backend.version,
            "models": {self.ref.label: self.ref.id},
            "logprobs": "raw (before temperature/top-p/top-k)",
            "entropies": f"lower bound from the top-{TOP_LOGPROBS} log-probs",
            "first_token": f"top-{TOP_LOGPROBS} as reported by the engine",
        }  # fmt: skip

    def sample(
        self,
        prompt: str,
        params: SamplingParams,
        batch_size: int = 256,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> ModelSamples:
        started = time.perf_counter()
        text = model_input(self, prompt, params.chat)
        ids = encode_prompt(self, text, params.max_new_tokens)[0].tolist()
        seed = model_seed(params.seed, self.ref.label)
        chunks = [(s, min(PER_REQUEST, params.n - s)) for s in range(0, params.n, PER_REQUEST)]
        done = [0]

        def one(chunk: tuple[int, int]) -> dict:
            start, size = chunk
            return self.backend.complete(completion_payload(self, ids, params, size, (seed + start) % 2**31))

        def on_done(i: int) -> None:
            done[0] += chunks[i][1] * params.max_new_tokens
            if progress:
                progress(self.ref.label, done[0], params.n * params.max_new_tokens)

        bodies = self.backend.map(one, chunks, cancel, on_done=on_done)
        rows, first = self._rows(prompt, text, params, seed, chunks, bodies)
        return ModelSamples(rows, first, text, time.perf_counter() - started)

    def _rows(self, prompt, text, params, seed, chunks, bodies) -> tuple[list[dict], list[dict]]:
        choices = [(start + c["index"], c) for (start, _), body in zip(chunks, bodies, strict=True)
                   for c in sorted(body["choices"], key=lambda c: c["index"])]  # fmt: skip
        parsed = [(index, c, *choice_tokens(c)) for index, c in choices]
        texts = self._decode_distinct([p[2] for p in parsed])
        rows, first = [], []
        for index, c, ids, logprobs, tops in parsed:
            rows.append(response_row(
                self, (prompt, text, params, seed), index, ids, texts[tuple(ids)],
                c.get("finish_reason") == "stop", logprobs=logprobs, model_logprobs=logprobs,
                entropies=[topk_entropy(t) for t in tops],
            ))  # fmt: skip
            if not first and tops:
                first = self._first_token_rows(tops[0])
        return rows, first

    def _decode_distinct(self, responses: list[list[int]]) -> dict[tuple[int, ...], str]:
        """Each response's text from its ids alone (the engine's own text continues the
        prompt's, with its spacing): one `/detokenize` per distinct response, concurrently."""
        distinct = sorted({tuple(ids) for ids in responses})
        return dict(zip(distinct, self.backend.map(self.tokenizer.decode, distinct), strict=True))

    def _first_token_rows(self, top: dict[int, float]) -> list[dict]:
        """The first generated token's top-k, as the engine reports it (k = TOP_LOGPROBS)."""
        ranked = sorted(top.items(), key=lambda kv: -kv[1])
        return [
            {"model": self.ref.label, "rank": r + 1, "token_id": i, "token": token_texts(self.tokenizer, [i])[0],
             "prob": math.exp(lp)}
            for r, (i, lp) in enumerate(ranked)
        ]  # fmt: skip

    def continuation_logprobs(
        self,
        prefixes: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[int]],
        full: bool = False,
        cancel: CancelToken | None = None,
    ) -> list[torch.Tensor]:
        if full:
            raise ValueError(
                f"family: {self.ref.label} is served by an engine that reports top-k log-probs "
                "only; KL/JS divergence needs whole next-token distributions (use local weights)"
            )
        check_cancel(cancel)
        rows = [list(p) + list(c) for p, c in zip(prefixes, continuations, strict=True)]
        scored = score_ids(self, rows, cancel=cancel)  # per row: log-probs of tokens 1..end
        return [
            torch.tensor(lp[len(lp) - len(c) :] if c else [], dtype=torch.float32)
            for lp, c in zip(scored, continuations, strict=True)
        ]

    def choice_logprobs(
        self, rows: torch.Tensor, predict_at: torch.Tensor, choices: torch.Tensor
    ) -> torch.Tensor:
        """Only each row's own next token can be scored through the API (K = 1): the engine
        reports log p of the tokens it is given, not of arbitrary candidates."""
        if choices.shape[1] != 1:
            raise ValueError(
                "foil: contrastive scores need whole distributions; served models report top-k only"
            )
        scored = torch.tensor(score_ids(self, rows.tolist()))  # (rows, len − 1): tokens 1..
        return scored[:, predict_at].unsqueeze(-1)  # (rows, targets, 1)


def completion_payload(
    member: ServedMember, prompt_ids: list[int], params: SamplingParams, size: int, seed: int
) -> dict:
    return {
        "model": member.name, "prompt": prompt_ids, "n": size,
        "temperature": float(params.temperature), "top_p": float(params.top_p),
        "top_k": int(params.top_k) if params.top_k else -1, "max_tokens": params.max_new_tokens,
        "seed": seed, "logprobs": TOP_LOGPROBS, "return_tokens_as_token_ids": True,
        "skip_special_tokens": True,
    }  # fmt: skip


def choice_tokens(choice: dict) -> tuple[list[int], list[float], list[dict[int, float]]]:
    """Generated ids, their raw log-probs and the top-k alternatives per position, without the
    end-of-sequence token (its presence is what `finish_reason == "stop"` reports)."""
    lp = choice["logprobs"]
    ids = [token_id(t) for t in lp["tokens"]]
    logprobs = [float(x) for x in lp["token_logprobs"]]
    tops = [{token_id(k): float(v) for k, v in (top or {}).items()} for top in lp["top_logprobs"]]
    if choice.get("finish_reason") == "stop" and ids and choice.get("stop_reason") is None:
        ids, logprobs, tops = ids[:-1], logprobs[:-1], tops[:-1]
    return ids, logprobs, tops


def topk_entropy(top: dict[int, float]) -> float:
    """Entropy (nats) of a next-token distribution known by its top-k: the missing mass counts
    as one outcome, so this is a lower bound, exact when the top-k holds all the mass."""
    probs = [math.exp(v) for v in top.values()]
    rest = max(0.0, 1.0 - sum(probs))
    return -sum(p * math.log(p) for p in probs + [rest] if p > 0)


def score_ids(
    member: ServedMember, rows: list[list[int]], per_request: int = 32, cancel: CancelToken | None = None
) -> list[list[float]]:
    """Teacher-forced log p(token | earlier tokens) for every token after the first, for each row
    of ids: `echo` with `max_tokens=0`, rows batched into requests that run concurrently (one
    row per request, one request at a time, with `serial_scoring`)."""
    if member.backend.serial_scoring:
        per_request = 1

    def one(batch: list[list[int]]) -> list[list[float]]:
        body = member.backend.complete(
            {"model": member.name, "prompt": batch, "max_tokens": 0, "echo": True, "logprobs": 0,
             "temperature": 0.0}
        )  # fmt: skip
        choices = sorted(body["choices"], key=lambda c: c["index"])
        return [[float(x) for x in c["logprobs"]["token_logprobs"][1:]] for c in choices]

    batches = [rows[i : i + per_request] for i in range(0, len(rows), per_request)]
    return [lp for part in member.backend.map(one, batches, cancel) for lp in part]


_MEMBERS: dict[tuple[str, str], ServedMember] = {}
_MEMBERS_LOCK = threading.Lock()


def served_member(ref: ModelRef, base_ref: ModelRef) -> ServedMember:
    """The `ServedMember` for a served ref (one per server, name and base in this process,
    always under the asking ref's identity); all members share the base's tokenizer."""
    key = (ref.server, ref.id, base_ref.id)
    with _MEMBERS_LOCK:
        if key in _MEMBERS:
            return _named(_MEMBERS[key], ref)
    backend = backend_for(ref.server)
    served = {m["id"]: m for m in backend.models()}
    if ref.id not in served:
        raise ModelLoadError(
            f"{ref.label}: {backend.root_url} does not serve {ref.id!r} (it serves {', '.join(served) or 'nothing'})"
        )
    info = served.get(base_ref.id, served[ref.id])
    length = int(info.get("max_model_len") or served[ref.id].get("max_model_len") or 2048)
    if ref.id == base_ref.id:
        tokenizer = RemoteTokenizer(backend, base_ref.id)
    else:
        tokenizer = served_member(base_ref, base_ref).tokenizer
    with _MEMBERS_LOCK:
        return _named(_MEMBERS.setdefault(key, ServedMember(ref, backend, tokenizer, length, base_ref.id)), ref)


def _named(member: ServedMember, ref: ModelRef) -> ServedMember:
    """The cached member under the asking family's identity (label, relation, parent)."""
    return member if member.ref == ref else replace(member, ref=ref)
