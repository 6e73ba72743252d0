"""Errors from the Hugging Face hub (or a local folder it was asked for) as sentences."""

from __future__ import annotations

import os

from explorer.core.errors import HubUnreachableError, ModelLoadError
from explorer.core.refs import ModelRef

OFFLINE_HINTS = ("offline", "resolve", "connect", "Connection", "Network", "Temporary failure",
                 "cached files")  # fmt: skip


def hub_error(ref: ModelRef, err: Exception) -> ModelLoadError:
    """A loading error as a sentence: unreachable hub, unreadable folder, or the library's own."""
    if ref.is_local:
        return ModelLoadError(f"{ref.label}: cannot read {ref.id}: {err}")
    text = str(err)
    what = f"{ref.id}/{ref.gguf_file}" if ref.gguf_file else ref.id
    offline = any(s in text for s in OFFLINE_HINTS)
    if offline or os.environ.get("HF_HUB_OFFLINE") == "1":
        return HubUnreachableError(
            f"{ref.label}: cannot fetch {what!r} from the Hugging Face hub (it is not reachable "
            "from here, or HF_HUB_OFFLINE=1). Use a local folder, or the bundled 'fable' family."
        )
    return ModelLoadError(f"{ref.label}: cannot load {what!r}: {text.splitlines()[0]}")
