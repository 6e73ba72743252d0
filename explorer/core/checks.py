"""Checks that say, in a sentence, why a member cannot be used, before anything heavy runs.

Shared by family resolution (validation up front) and the model store (loading), so both give
the same message for the same problem.
"""

from __future__ import annotations

from pathlib import Path

from explorer.core.errors import ModelLoadError
from explorer.core.gguf import check_gguf
from explorer.core.hub import hub_error
from explorer.core.refs import ModelRef

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()


def check_ref(ref: ModelRef) -> None:
    """Read a member's config (local or hub) and say clearly why it cannot be used."""
    if ref.gguf_file is not None or str(ref.id).endswith(".gguf"):
        check_gguf(ref)
        return
    if ref.is_local:
        folder = Path(ref.id)
        if not folder.is_dir() or not is_model_folder(folder):
            raise ModelLoadError(
                f"{ref.label}: {folder} is not a model folder (no config.json or adapter_config.json)"
            )
        if ref.adapter:
            return
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(ref.id, revision=ref.revision, trust_remote_code=False)
    except OSError as err:
        raise hub_error(ref, err) from err
    except ValueError as err:
        raise ModelLoadError(f"{ref.label}: unsupported model config ({err})") from err
    check_causal(ref, config.architectures or [])


def check_causal(ref: ModelRef, archs: list[str]) -> None:
    if archs and not any(a.endswith(CAUSAL_SUFFIXES) for a in archs):
        raise ModelLoadError(
            f"{ref.label}: {', '.join(archs)} is not a causal language model; the explorer "
            "needs models that generate text left to right (…ForCausalLM)"
        )
