"""Families served by an inference engine (vLLM) through its OpenAI-compatible HTTP API.

One engine serves the base model and its LoRA descendants by name, so a workshop room loads the
model once and a 7B family runs on a GPU machine while the explorer runs anywhere. Through the
API the explorer gets sampling (n, seeds, per-token log-probs and top-k alternatives) and
teacher-forced scoring (`echo` with `max_tokens=0`), which is enough for variability,
provenance, cross-scoring and occlusion attribution. Gradient and attention methods need the
weights and say so.

The client is stateless apart from its connection pool: a server that goes away gives a clear
`ServerUnavailableError` after a few retries, and the same family works again once it is back.
"""

from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from explorer.core.errors import ModelLoadError

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class Gate:
    """Many shared holders (sampling requests) or one exclusive holder (a scoring request)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and self._shared == 0)
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class ServerUnavailableError(ModelLoadError, ConnectionError):
    """The model server did not answer (down, restarting, overloaded) after several retries."""


def is_server_url(spec: Any) -> bool:
    return isinstance(spec, str) and spec.startswith(("http://", "https://"))


class OpenAIBackend:
    """A client for one OpenAI-compatible server (vLLM's `/v1/completions`, `/v1/models`,
    `/tokenize`, `/detokenize`, `/version`).

    Requests run on a bounded thread pool (`max_workers`) so many samples and many models are in
    flight at once while the server batches them; each request has a timeout and is retried
    with exponential backoff on connection errors, 408, 429 and 5xx.

    `serial_scoring` (default on) sends teacher-forced scoring requests one prompt at a time and
    alone (no sampling request of this client in flight): vLLM's CPU build (0.32) computes
    prompt log-probs with LoRA enabled using the per-sequence LoRA indices of the whole engine
    step, so two requests in one step crash the engine (or, when the sizes happen to match,
    apply the wrong adapter). Turn it off for engines without that bug, for speed."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_workers: int = 8,
        serial_scoring: bool = True,
    ) -> None:
        if not is_server_url(base_url):
            raise ValueError(
                f"base_url: an http(s) address like http://host:8000/v1, got {base_url!r}"
            )
        for name, value in (("timeout", timeout), ("backoff", backoff)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}: must be a positive number, got {value!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries: must be a non-negative integer, got {retries!r}")
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers: must be a positive integer, got {max_workers!r}")
        self.base_url = base_url.rstrip("/")
        self.root_url = (
            self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        )
        self.api_key, self.timeout, self.retries, self.backoff = api_key, timeout, retries, backoff
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fx-remote")
        self.serial_scoring = serial_scoring
        self.gate = Gate()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.base_url!r})"

    # --- HTTP -------------------------------------------------------------------------------

    @property
    def _session(self):
        import requests

        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            if self.api_key:
                self._local.session.headers["Authorization"] = f"Bearer {self.api_key}"
        return self._local.session

    def request(self, method: str, url: str, payload: dict | None = None) -> Any:
        """JSON from the server, retrying transient failures; a clear error otherwise."""
        import requests

        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random()))
            try:
                resp = self._session.request(method, url, json=payload, timeout=self.timeout)
            except requests.RequestException as err:
                last = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                continue
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            if resp.status_code >= 400:
                raise ValueError(
                    f"server: {url} refused the request (HTTP {resp.status_code}): {_message(resp)}"
                )
            return resp.json()
        raise ServerUnavailableError(
            f"server: {self.root_url} is not answering ({last}) after {self.retries + 1} tries. "
            "Start or restart it (or check the address); results finished so far are kept, "
            "and the same family works again once the server is back."
        )

    def get(self, path: str, root: bool = False) -> Any:
        return self.request("GET", (self.root_url if root else self.base_url) + path)

    def post(self, path: str, payload: dict, root: bool = False) -> Any:
        return self.request("POST", (self.root_url if root else self.base_url) + path, payload)

    # --- what the server serves ------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """The served models: `id`, `parent` (the base, for a LoRA adapter), `max_model_len`."""
        return list(self.get("/models").get("data", []))

    @cached_property
    def version(self) -> str:
        """The engine's version (vLLM's `/version`), or "unknown" for servers without it."""
        try:
            return str(self.get("/version", root=True).get("version", "unknown"))
        except (ValueError, ServerUnavailableError):
            return "unknown"

    # --- completions -----------------------------------------------------------------------

    def complete(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A completion; scoring requests (`echo`) go alone when `serial_scoring` is on."""
        if not self.serial_scoring:
            return self.post("/completions", payload)
        with self.gate.exclusive() if payload.get("echo") else self.gate.shared():
            return self.post("/completions", payload)

    def map(self, fn, items: list, cancel=None, on_done=None) -> list:
        """`fn` over `items` on the request pool, results in order. The first error is raised
        and requests not yet sent are dropped; a cancel token stops waiting at once (requests in
        flight finish on the server and are discarded); `on_done(i)` reports each item done."""
        futures = [self.pool.submit(fn, item) for item in items]
        index = {f: i for i, f in enumerate(futures)}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            for f in finished:
                if f.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise f.exception()
                if on_done:
                    on_done(index[f])
            if cancel is not None and cancel.cancelled and pending:
                for f in pending:
                    f.cancel()
                cancel.check()
        return [f.result() for f in futures]


def _message(resp) -> str:
    try:
        body = resp.json()
        err = body.get("error", body)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except ValueError:
        return resp.text[:300]


_BACKENDS: dict[tuple[str, str | None], OpenAIBackend] = {}
_BACKENDS_LOCK = threading.Lock()


def backend_for(base_url: str, api_key: str | None = None) -> OpenAIBackend:
    """One client (one connection pool) per server address in this process."""
    key = (base_url.rstrip("/"), api_key)
    with _BACKENDS_LOCK:
        if key not in _BACKENDS:
            _BACKENDS[key] = OpenAIBackend(base_url, api_key)
        return _BACKENDS[key]


def register_backend(backend: OpenAIBackend) -> None:
    """Use `backend` (with its own timeouts, retries, pool size) for its address."""
    with _BACKENDS_LOCK:
        _BACKENDS[(backend.base_url, backend.api_key)] = backend


# --- the tokenizer and "loaded model" of a served member -----------------------------------


def token_id(entry: str) -> int:
    """vLLM's `return_tokens_as_token_ids` writes tokens as "token_id:123"."""
    return int(entry.rsplit(":", 1)[1])


class RemoteTokenizer:
    """The server's own tokenizer, through `/tokenize` and `/detokenize`: the ids the explorer
    shows and scores are exactly those the engine uses. Token strings are cached per id."""

    chat_template = None  # completions only: chat templates are applied by the chat endpoint

    def __init__(self, backend: OpenAIBackend, model: str) -> None:
        self.backend, self.model = backend, model
        self._strings: dict[int, str] = {}
        self._lock = threading.Lock()

    def __call__(
        self,
        text: str,
        add_special_tokens: bool = True,
        return_tensors: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        body = self.backend.post(
            "/tokenize",
            {"model": self.model, "prompt": text, "add_special_tokens": bool(add_special_tokens)},
            root=True,
        )
        ids = list(body["tokens"])
        if return_tensors == "pt":
            import torch

            return {"input_ids": torch.tensor([ids], dtype=torch.long)}  # (1, seq)
        return {"input_ids": ids}

    @property
    def bos_token(self) -> str | None:
        return None if self.bos_token_id is None else self.convert_ids_to_tokens(self.bos_token_id)

    @cached_property
    def bos_token_id(self) -> int | None:
        ids = self("", add_special_tokens=True)["input_ids"]
        return ids[0] if ids else None

    pad_token_id = eos_token_id = unk_token_id = None  # not exposed by the API

    @property
    def all_special_ids(self) -> list[int]:
        return [self.bos_token_id] if self.bos_token_id is not None else []

    def convert_ids_to_tokens(self, ids):
        if isinstance(ids, int):
            return self.convert_ids_to_tokens([ids])[0]
        missing = sorted({int(i) for i in ids} - self._strings.keys())
        if missing:
            texts = self.backend.map(self.decode, [[i] for i in missing])
            with self._lock:
                self._strings.update(zip(missing, texts, strict=True))
        return [self._strings[int(i)] for i in ids]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        if not len(ids):
            return ""
        return self.backend.post(
            "/detokenize", {"model": self.model, "tokens": list(ids)}, root=True
        )["prompt"]

    def convert_tokens_to_ids(self, token: str):
        ids = self(token, add_special_tokens=False)["input_ids"]
        return ids[0] if len(ids) == 1 else None


@dataclass
class RemoteModel:
    """A served member: what `Family.load` returns for it. `model` is None: there are no local
    weights, so only forward-only analyses (sampling, scoring, occlusion) are possible."""

    ref: Any  # ModelRef
    backend: OpenAIBackend
    tokenizer: RemoteTokenizer
    context_length: int
    n_bytes: int = 0
    model: Any = None

    @property
    def name(self) -> str:
        """The model name the server knows (the LoRA adapter's name for a descendant)."""
        return self.ref.id


# --- sampling and scoring through the API --------------------------------------------------

TOP_LOGPROBS = 20  # vLLM's default --max-logprobs


def remote_sample_chunks(n: int, per_request: int = 16) -> list[tuple[int, int]]:
    """(start, size) of each request: several requests per model run concurrently, each with its
    own seed, so the same (seed, n) always gives the same samples whatever the concurrency."""
    return [(s, min(per_request, n - s)) for s in range(0, n, per_request)]


def completion_payload(
    model: RemoteModel, prompt_ids: list[int], params, size: int, seed: int
) -> dict:
    return {
        "model": model.name,
        "prompt": prompt_ids,
        "n": size,
        "temperature": float(params.temperature),
        "top_p": float(params.top_p),
        "top_k": int(params.top_k) if params.top_k else -1,
        "max_tokens": params.max_new_tokens,
        "seed": seed,
        "logprobs": TOP_LOGPROBS,
        "return_tokens_as_token_ids": True,
        "skip_special_tokens": True,
    }


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
    model: RemoteModel, rows: list[list[int]], per_request: int = 32
) -> list[list[float]]:
    """Teacher-forced log p(token | earlier tokens) for every token after the first, for each row
    of ids: `echo` with `max_tokens=0`, rows batched into requests that run concurrently (one
    row per request, one request at a time, with `serial_scoring`)."""
    if model.backend.serial_scoring:
        per_request = 1

    def one(batch: list[list[int]]) -> list[list[float]]:
        body = model.backend.complete(
            {
                "model": model.name,
                "prompt": batch,
                "max_tokens": 0,
                "echo": True,
                "logprobs": 0,
                "temperature": 0.0,
            }  # fmt: skip
        )
        choices = sorted(body["choices"], key=lambda c: c["index"])
        return [[float(x) for x in c["logprobs"]["token_logprobs"][1:]] for c in choices]

    batches = [rows[i : i + per_request] for i in range(0, len(rows), per_request)]
    return [lp for part in model.backend.map(one, batches) for lp in part]


# --- families on a server --------------------------------------------------------------------

_MODELS: dict[tuple[str, str], RemoteModel] = {}
_MODELS_LOCK = threading.Lock()


def remote_model(ref, base_ref) -> RemoteModel:
    """The `RemoteModel` for a served member (one per server and name in this process); all
    members share the base's tokenizer."""
    key = (ref.server, ref.id)
    with _MODELS_LOCK:
        if key in _MODELS:
            return _MODELS[key]
    backend = backend_for(ref.server)
    served = {m["id"]: m for m in backend.models()}
    if ref.id not in served:
        raise ModelLoadError(
            f"{ref.label}: {backend.root_url} does not serve {ref.id!r} (it serves {', '.join(served) or 'nothing'})"
        )
    base_info = served.get(base_ref.id, served[ref.id])
    length = int(base_info.get("max_model_len") or served[ref.id].get("max_model_len") or 2048)
    if ref.id == base_ref.id:
        tokenizer = RemoteTokenizer(backend, base_ref.id)
    else:
        tokenizer = remote_model(base_ref, base_ref).tokenizer
    with _MODELS_LOCK:
        return _MODELS.setdefault(key, RemoteModel(ref, backend, tokenizer, length))


def served_family(url: str, base, descendants=None, api_key: str | None = None):
    """A family served by one server: `base` is a served model name; descendants are the names
    given, or every LoRA adapter the server lists with `base` as its parent."""
    from explorer.core.family import Family, ModelRef

    if "#" in url and base is None:  # "http://host:8000/v1#name", as the app's family box takes it
        url, base = url.split("#", 1)
    backend = backend_for(url, api_key)
    served = {m["id"]: m for m in backend.models()}
    if base is None:
        roots = [m for m, info in served.items() if not info.get("parent")]
        if len(roots) != 1:
            raise ValueError(
                f"base: {backend.root_url} serves {', '.join(roots) or 'no base model'}; name one (base=…, or URL#name)"
            )
        base = roots[0]
    if not isinstance(base, str) or not base.strip():
        raise ValueError("base: name the served base model, e.g. load_family(url, base='my-base')")
    if base not in served:
        raise ModelLoadError(
            f"base: {backend.root_url} does not serve {base!r} (it serves {', '.join(served) or 'nothing'})"
        )
    if descendants is None:
        names = [m for m, info in served.items() if info.get("parent") == base and m != base]
    else:
        names = [str(d) for d in descendants]
    for name in names:
        if name not in served:
            raise ModelLoadError(
                f"descendants: {backend.root_url} does not serve {name!r} (it serves {', '.join(served)})"
            )
    server = backend.base_url
    base_ref = ModelRef(id=base, label=base, server=server)
    refs = tuple(
        ModelRef(id=n, label=n, relation="adapter" if served[n].get("parent") == base else "finetune",
                 adapter=served[n].get("parent") == base, parent=base, server=server)
        for n in names
    )  # fmt: skip
    return Family(base=base_ref, descendants=refs, name=f"{base} @ {backend.root_url}")


def sample_served(
    family, labels: list[str], prompt: str, params, progress=None, cancel=None
) -> list:
    """`ModelSamples` for each served member: every (model, chunk of samples) request is in
    flight at once on the backend's bounded pool; the server batches them."""
    from explorer.core.sampling import encode_prompt, model_input, model_seed

    models = [family.load(label) for label in labels]
    plans = []
    for m in models:
        text = model_input(m, prompt, params.chat)
        ids = encode_prompt(m, text, params.max_new_tokens)[0].tolist()
        seed = model_seed(params.seed, m.ref.label)
        for start, size in remote_sample_chunks(params.n):
            plans.append((m, text, ids, seed, start, size))
    started = time.perf_counter()
    totals = {m.ref.label: params.n * params.max_new_tokens for m in models}
    done = dict.fromkeys(totals, 0)

    def one(plan):
        m, _, ids, seed, start, size = plan
        return m.backend.complete(completion_payload(m, ids, params, size, (seed + start) % 2**31))

    bodies = models[0].backend.map(
        one, plans, cancel, on_done=lambda i: _progress(plans[i], params, done, totals, progress)
    )
    return [_model_samples(m, [(p, b) for p, b in zip(plans, bodies, strict=True) if p[0] is m], prompt, params, started)
            for m in models]  # fmt: skip


def _progress(plan, params, done, totals, progress) -> None:
    label = plan[0].ref.label
    done[label] += plan[5] * params.max_new_tokens
    if progress:
        progress(label, done[label], totals[label])


def _model_samples(m: RemoteModel, parts, prompt: str, params, started: float):
    from explorer.core.sampling import ModelSamples

    rows, first = [], []
    tok = m.tokenizer
    for (_, text, _, seed, start, _), body in parts:
        for choice in sorted(body["choices"], key=lambda c: c["index"]):
            ids, logprobs, tops = choice_tokens(choice)
            rows.append(
                {
                    "model": m.ref.label,
                    "sample": start + choice["index"],
                    "seed": params.seed,
                    "model_seed": seed,
                    "prompt": prompt,
                    "model_input": text,
                    "text": tuple(ids),  # decoded below, as the local backend decodes
                    "tokens": tok.convert_ids_to_tokens(ids),
                    "token_ids": ids,
                    "logprobs": logprobs,  # the engine's raw log-probs (see meta "logprobs")
                    "model_logprobs": logprobs,
                    "entropies": [topk_entropy(t) for t in tops],
                    "n_tokens": len(ids),
                    "finish_reason": "eos" if choice.get("finish_reason") == "stop" else "length",
                }
            )
            if not first and tops:
                first = first_token_rows(m, tops[0])
    decode_texts(tok, rows)
    return ModelSamples(rows, first, parts[0][0][1], time.perf_counter() - started)


def first_token_rows(m: RemoteModel, top: dict[int, float]) -> list[dict]:
    """The first generated token's top-k, as the engine reports it (k = TOP_LOGPROBS)."""
    ranked = sorted(top.items(), key=lambda kv: -kv[1])
    names = m.tokenizer.convert_ids_to_tokens([i for i, _ in ranked])
    return [
        {"model": m.ref.label, "rank": r + 1, "token_id": i, "token": name, "prob": math.exp(lp)}
        for r, ((i, lp), name) in enumerate(zip(ranked, names, strict=True))
    ]


def decode_texts(tok: RemoteTokenizer, rows: list[dict]) -> None:
    """Each row's text from its ids alone (the engine's own text continues the prompt's, with
    its spacing), one `/detokenize` per distinct response, concurrently."""
    distinct = sorted({row["text"] for row in rows})
    texts = dict(zip(distinct, tok.backend.map(tok.decode, distinct), strict=True))
    for row in rows:
        row["text"] = texts[row["text"]]
