"""GGUF members (llama.cpp, Ollama, LM Studio files) through transformers' own GGUF loading.

transformers dequantizes a GGUF file into an ordinary model (float32 by default here, the dtype
is the store's). That takes tens of seconds for a 135M-parameter model — converting the
tokenizer alone about ten — so the first load writes the dequantized model and its tokenizer as
safetensors into a cache folder (`~/.cache/model-family-explorer/gguf/`, or `$FX_GGUF_CACHE`;
`FX_GGUF_CACHE=off` turns it off), keyed by the file's name, size and a digest of its first and
last 4 MiB, and later loads read that. The cached model is a fresh model built from the GGUF config without its
quantization record: a model loaded from GGUF refuses `save_pretrained` otherwise.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from explorer.core.errors import ModelLoadError
from explorer.core.hub import hub_error
from explorer.core.refs import ModelRef

ENCODER_ONLY = ("t5", "umt5", "t5encoder")  # GGUF architectures that are no causal LMs


def gguf_path(ref: ModelRef) -> Path:
    """The GGUF file on disk: a local file, or one downloaded from the hub (cached there)."""
    if ref.gguf_file is None:
        return Path(ref.id)
    local = Path(ref.id) / ref.gguf_file
    if local.is_file() or Path(ref.id).exists():
        return local
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(ref.id, ref.gguf_file, revision=ref.revision))
    except Exception as err:  # the hub client raises many network error types
        raise hub_error(ref, err) from err


def gguf_architecture(path: Path, label: str) -> str:
    """The model architecture a GGUF file declares (`general.architecture`)."""
    from gguf import GGUFReader

    if not path.is_file():
        raise ModelLoadError(f"{label}: no GGUF file at {path}")
    try:
        reader = GGUFReader(path)
        field = reader.fields["general.architecture"]
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except (ValueError, KeyError, IndexError, OSError) as err:
        raise ModelLoadError(
            f"{label}: {path.name} is not a readable GGUF file ({str(err).splitlines()[0][:120]})"
        ) from err


def check_gguf(ref: ModelRef) -> None:
    """Say in a sentence why a GGUF member cannot be used: unreadable, or an architecture that
    transformers cannot read, or no causal LM."""
    import transformers
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if ref.gguf_file is not None and not Path(ref.id).exists():
        return  # on the hub: read when it is downloaded
    path = gguf_path(ref)
    arch = gguf_architecture(path, ref.label)
    readable = [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer", *ENCODER_ONLY)]
    if arch in ENCODER_ONLY:
        raise ModelLoadError(f"{ref.label}: {path.name} holds a '{arch}' encoder model, not a causal language model")
    if arch not in readable and not any(arch.startswith(a) for a in readable):
        raise ModelLoadError(
            f"{ref.label}: {path.name} holds a '{arch}' model, which transformers "
            f"{transformers.__version__} cannot read from GGUF (it reads {', '.join(readable)}). "
            "Convert it to safetensors with llama.cpp's tools, or upgrade transformers."
        )


def cache_root() -> Path | None:
    setting = os.environ.get("FX_GGUF_CACHE", "")
    if setting.lower() in ("off", "0", "no"):
        return None
    return Path(setting or Path.home() / ".cache" / "model-family-explorer" / "gguf")


def cache_key(path: Path, sample: int = 4 << 20) -> str:
    """The file's name and a digest of its size, first and last 4 MiB: the same file copied
    elsewhere (a test's temporary folder, a second checkout) reuses one cache entry instead of
    adding another of hundreds of megabytes."""
    size = path.stat().st_size
    digest = hashlib.sha1(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(sample))
        f.seek(max(0, size - sample))
        digest.update(f.read(sample))
    return f"{path.stem}-{digest.hexdigest()[:12]}"


def gguf_tokenizer(ref: ModelRef) -> Any:
    """The tokenizer a GGUF file carries (from the cache once converted)."""
    from transformers import AutoTokenizer

    path = gguf_path(ref)
    cached = _cached(path, "tokenizer")
    if cached is not None and (cached / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(cached)
    tok = _convert(lambda: AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name), ref, path)
    if cached is not None:
        _write_atomic(cached, tok.save_pretrained)
    return tok


def gguf_model(ref: ModelRef, dtype: torch.dtype) -> Any:
    """The dequantized model (a fresh transformers model in `dtype`, from the cache once made)."""
    from transformers import AutoModelForCausalLM

    path = gguf_path(ref)
    cached = _cached(path, str(dtype).removeprefix("torch."))
    if cached is not None and (cached / "config.json").is_file():
        return AutoModelForCausalLM.from_pretrained(cached, dtype=dtype, attn_implementation="eager")
    loaded = _convert(
        lambda: AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype),
        ref, path,
    )  # fmt: skip
    model = plain_copy(loaded, dtype)
    if cached is not None:
        _write_atomic(cached, model.save_pretrained)
    return model


def plain_copy(model: Any, dtype: torch.dtype) -> Any:
    """The same weights in a fresh model without the GGUF quantization record, so that it can
    be saved, adapted with peft and merged like any other."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config._attn_implementation = "eager"
    fresh = AutoModelForCausalLM.from_config(config, dtype=dtype)
    fresh.load_state_dict(model.state_dict())
    fresh.tie_weights()
    return fresh.eval()


def _convert(load, ref: ModelRef, path: Path) -> Any:
    try:
        return load()
    except (ValueError, KeyError, NotImplementedError) as err:
        raise ModelLoadError(f"{ref.label}: transformers cannot read {path.name}: {str(err).splitlines()[0]}") from err


def _cached(path: Path, kind: str) -> Path | None:
    root = cache_root()
    return None if root is None else root / cache_key(path) / kind


def _write_atomic(folder: Path, save) -> None:
    """Save into a temporary folder beside `folder`, then rename it: never a half cache. A
    cache that cannot be written (read-only home, a concurrent writer) is skipped."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    except OSError:
        return
    try:
        save(tmp)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
