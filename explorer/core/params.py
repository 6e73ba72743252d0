"""Validated settings and the small shared pieces of every long computation: sampling
parameters, the prompt check, per-model seeds, progress callbacks and the cancel token."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from explorer.core.errors import Cancelled

MAX_N = 4096
MAX_PROMPT_CHARS = 200_000
CHAT_MODES = ("auto", "never", "always")

ProgressFn = Callable[[str, int, int], None]  # (model label, steps done, steps total)


class CancelToken:
    """Set from any thread; long computations check it between steps and raise `Cancelled`."""

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        if self._cancelled:
            raise Cancelled("cancelled")


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise `Cancelled` if `cancel` is set (None: never)."""
    if cancel is not None:
        cancel.check()


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name}: expected a finite number, got {value!r}")


@dataclass(frozen=True)
class SamplingParams:
    """Validated sampling settings. Defaults are pure sampling: temperature 1, no top-k/top-p."""

    n: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 24
    seed: int = 0
    chat: str = "auto"

    def __post_init__(self) -> None:
        for name in ("n", "top_k", "max_new_tokens", "seed"):
            if not is_int(getattr(self, name)):
                raise TypeError(f"{name}: expected an integer, got {getattr(self, name)!r}")
        for name in ("temperature", "top_p"):
            _check_number(name, getattr(self, name))
        self._check_ranges()

    def _check_ranges(self) -> None:
        if not 1 <= self.n <= MAX_N:
            raise ValueError(f"n: must be between 1 and {MAX_N} samples per model, got {self.n}")
        if self.temperature <= 0:
            raise ValueError(
                f"temperature: must be > 0 (use a small value for near-greedy), got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k: must be >= 0 (0 turns it off), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens: must be at least 1, got {self.max_new_tokens}")
        if self.seed < 0:
            raise ValueError(f"seed: must be >= 0, got {self.seed}")
        if self.chat not in CHAT_MODES:
            raise ValueError(f"chat: one of {', '.join(CHAT_MODES)}, got {self.chat!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_seed(seed: int, label: str) -> int:
    """Each model's own stream, so its samples do not depend on which other models ran."""
    return (seed * 1_000_003 + zlib.crc32(label.encode())) % (2**31)


def check_batch_size(batch_size: Any) -> int:
    """Sequences per `generate` call: a positive integer."""
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size: must be a positive integer, got {batch_size!r}")
    return batch_size


def check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt: expected a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("prompt: is empty; type some text for the models to continue")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(
            f"prompt: is {len(prompt):,} characters; the limit is {MAX_PROMPT_CHARS:,}"
        )
    return prompt
