"""Loading local members safely, and keeping a bounded LRU cache of them.

Safe by default: `trust_remote_code=False` always, and safetensors (or GGUF) only — pickled
`.bin`/`.pt` checkpoints can execute code when loaded, so they are refused unless the caller
opts in.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from explorer.core.checks import check_ref
from explorer.core.errors import ModelLoadError, UnsafeWeightsError
from explorer.core.hub import hub_error
from explorer.core.local import LocalMember
from explorer.core.refs import ModelRef

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def pick_device(device: str | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """float32 on CPU (exact comparisons, fast enough for small models); bfloat16 on CUDA."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is not None:
        return getattr(torch, dtype)
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def check_weights_safe(folder: Path, label: str, allow_pickle: bool) -> None:
    """Refuse a local folder whose weights exist only in pickle formats."""
    if allow_pickle or not folder.is_dir():
        return
    safe = list(folder.glob("*.safetensors")) + list(folder.glob("*.gguf"))
    pickled = [p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickled and not safe:
        raise UnsafeWeightsError(
            f"{label}: {folder} has only pickled weights ({', '.join(p.name for p in pickled)}). "
            "Pickle files can run arbitrary code when loaded, so they are refused by default. "
            "Convert them to safetensors, or pass allow_pickle=True if you trust their source."
        )


class ModelStore:
    """An LRU cache of loaded members, bounded by count and by estimated bytes."""

    def __init__(
        self,
        max_models: int = 8,
        max_bytes: int = 8 * 2**30,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        allow_pickle: bool = False,
    ) -> None:
        if max_models < 1:
            raise ValueError(f"max_models: must be at least 1, got {max_models}")
        self.max_models, self.max_bytes = max_models, max_bytes
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.allow_pickle = allow_pickle
        self._models: OrderedDict[tuple, LocalMember] = OrderedDict()
        self._tokenizers: dict[tuple, Any] = {}
        self._lock = threading.RLock()

    @staticmethod
    def _key(ref: ModelRef, parent: ModelRef | None = None) -> tuple:
        return (ref.id, ref.gguf_file, ref.revision, parent.id if parent else None)

    @property
    def cached(self) -> list[str]:
        return [m.ref.label for m in self._models.values()]

    @property
    def n_bytes(self) -> int:
        return sum(m.n_bytes for m in self._models.values())

    def tokenizer(self, ref: ModelRef) -> Any:
        key = self._key(ref)
        with self._lock:
            if key not in self._tokenizers:
                self._tokenizers[key] = load_tokenizer(ref)
            return self._tokenizers[key]

    def get(self, ref: ModelRef, parent: ModelRef | None = None) -> LocalMember:
        """The member for `ref`, loaded once per weights (id, file, revision, parent) and
        shared between names: the member returned always carries the asking ref, so its
        label, relation and parent are the asking family's, whatever name loaded it first."""
        key = self._key(ref, parent)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key].named(ref)
            loaded = self._load(ref, parent)
            self._models[key] = loaded
            self._evict(keep=key)
            return loaded

    def _evict(self, keep: tuple) -> None:
        while len(self._models) > 1 and (
            len(self._models) > self.max_models or self.n_bytes > self.max_bytes
        ):
            oldest = next(iter(self._models))
            if oldest == keep:
                break
            del self._models[oldest]

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._tokenizers.clear()

    def _load(self, ref: ModelRef, parent: ModelRef | None) -> LocalMember:
        tokenizer = self.tokenizer(ref if not ref.adapter or parent is None else _tokenizer_ref(ref, parent))
        if ref.adapter:
            if parent is None:
                raise ModelLoadError(
                    f"{ref.label}: is an adapter but its base model is not in the family "
                    "(load the family with the adapter's base as base)"
                )
            model = load_adapter(ref, load_causal_lm(parent, self.dtype, self.allow_pickle))
        else:
            model = load_causal_lm(ref, self.dtype, self.allow_pickle)
        model = model.to(self.device).eval()
        check_vocab(ref, tokenizer, model)
        n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        return LocalMember(ref=ref, model=model, tokenizer=tokenizer, n_bytes=n_bytes)


def _tokenizer_ref(ref: ModelRef, parent: ModelRef) -> ModelRef:
    """An adapter's tokenizer: its own folder's when it ships one, else its base's."""
    folder = Path(ref.id)
    own = folder.is_dir() and any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json"))
    return ref if own else parent


def check_vocab(ref: ModelRef, tokenizer: Any, model: Any) -> None:
    """A tokenizer whose ids run past the model's embedding table belongs to another model."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ModelLoadError(
            f"{ref.label}: its tokenizer has {len(tokenizer)} tokens but the model's vocabulary has "
            f"{rows}: they do not belong together"
        )


def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    if is_gguf(ref):
        from explorer.core.gguf import gguf_tokenizer

        tok = gguf_tokenizer(ref)
    else:
        try:
            tok = AutoTokenizer.from_pretrained(ref.id, revision=ref.revision, trust_remote_code=False)
        except (OSError, ValueError, TypeError) as err:
            raise hub_error(ref, err) from err
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def is_gguf(ref: ModelRef) -> bool:
    return ref.gguf_file is not None or str(ref.id).endswith(".gguf")


def load_causal_lm(ref: ModelRef, dtype: torch.dtype, allow_pickle: bool = False) -> Any:
    from transformers import AutoModelForCausalLM

    check_ref(ref)  # a non-causal model (BERT) would otherwise load as a "causal" LM head
    if is_gguf(ref):
        from explorer.core.gguf import gguf_model

        return gguf_model(ref, dtype)
    if ref.is_local:
        check_weights_safe(Path(ref.id), ref.label, allow_pickle)
    try:
        return AutoModelForCausalLM.from_pretrained(
            ref.id, revision=ref.revision, dtype=dtype, trust_remote_code=False,
            use_safetensors=None if allow_pickle else True, attn_implementation="eager",
        )  # fmt: skip
    except OSError as err:
        if "safetensors" in str(err).lower() and not allow_pickle:
            raise UnsafeWeightsError(
                f"{ref.label}: no safetensors weights for {ref.id!r}; pickled weights are refused "
                "by default (pass allow_pickle=True if you trust their source)"
            ) from err
        raise hub_error(ref, err) from err
    except ValueError as err:
        raise ModelLoadError(f"{ref.label}: cannot load as a causal LM: {err}") from err
    except Exception as err:  # corrupt safetensors headers raise library-specific errors
        raise ModelLoadError(
            f"{ref.label}: the weights in {ref.id} could not be read ({err})"
        ) from err


def load_adapter(ref: ModelRef, base_model: Any) -> Any:
    """A peft adapter on its own copy of the base (peft injects its layers in place)."""
    from peft import PeftModel

    if ref.is_local:
        check_weights_safe(Path(ref.id), ref.label, allow_pickle=False)
    try:
        return PeftModel.from_pretrained(
            base_model, ref.id, revision=ref.revision, is_trainable=False
        )
    except Exception as err:
        raise ModelLoadError(
            f"{ref.label}: the adapter in {ref.id} could not be applied ({err})"
        ) from err


_DEFAULT: ModelStore | None = None
_DEFAULT_LOCK = threading.Lock()


def default_store() -> ModelStore:
    """The process-wide store used by families that were not given one (created on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = ModelStore()
        return _DEFAULT
