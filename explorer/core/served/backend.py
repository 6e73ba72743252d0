"""The HTTP client for one OpenAI-compatible server (vLLM): pooled, retried, with timeouts.

The client is stateless apart from its connection pool: a server that goes away gives a clear
`ServerUnavailableError` after a few retries, and the same family works again once it is back.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
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
