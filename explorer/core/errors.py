"""Errors the explorer raises on purpose, each with a message a user can act on."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model, tokenizer or adapter could not be loaded; the message says why and what to do."""


class UnsafeWeightsError(ModelLoadError, ValueError):
    """Weights exist only as pickled `.bin`/`.pt` files, which can run code when loaded."""


class HubUnreachableError(ModelLoadError, ConnectionError):
    """The Hugging Face hub could not be reached (offline, firewalled, or HF_HUB_OFFLINE=1)."""


class Cancelled(Exception):
    """A long computation stopped because its cancel token was set. `partial` holds what had
    finished when the computation can say (e.g. the scorers done so far), else None."""

    def __init__(self, message: str = "cancelled", partial=None) -> None:
        super().__init__(message)
        self.partial = partial
