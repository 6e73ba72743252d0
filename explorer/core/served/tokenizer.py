"""A served model's tokenizer, through the server's `/tokenize` and `/detokenize`."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Any

from explorer.core.served.backend import OpenAIBackend


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

    def token_texts(self, ids) -> list[str]:
        """Each token's text, decoded on its own by the server (cached per id): prefix
        decoding would cost a request per position."""
        return self.convert_ids_to_tokens(list(ids))

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        if not len(ids):
            return ""
        return self.backend.post(
            "/detokenize", {"model": self.model, "tokens": list(ids)}, root=True
        )["prompt"]

    def convert_tokens_to_ids(self, token: str):
        ids = self(token, add_special_tokens=False)["input_ids"]
        return ids[0] if len(ids) == 1 else None
