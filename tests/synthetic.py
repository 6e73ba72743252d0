"""A randomly initialised GPT-2-small-shaped model with a 50,257-word tokenizer (no download),
saved as a one-member family so every benchmark can run on a realistically sized model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

VOCAB = 50257


def word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` (split on white space only, so any string without
    spaces — markup included — stays one token), with <pad> <unk> <bos> <eos> first."""
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 2)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                                   pad_token="<pad>", padding_side="left")  # fmt: skip


def synthetic_tokenizer(size: int = VOCAB) -> PreTrainedTokenizerFast:
    """`size` tokens: the four specials and the words w4 … w{size-1}."""
    return word_tokenizer([f"w{i}" for i in range(4, size)])


def gpt2_small_folder(root: Path | None = None, seed: int = 0) -> Path:
    """Save the model (124M parameters, float32) and tokenizer; returns the folder."""
    root = Path(root or tempfile.mkdtemp(prefix="fx-gpt2-"))
    folder = root / "gpt2-small-random"
    if (folder / "model.safetensors").is_file():
        return folder
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=VOCAB, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    synthetic_tokenizer().save_pretrained(folder)
    return folder


def words(n: int, offset: int = 100) -> str:
    return " ".join(f"w{offset + 37 * i % 5000}" for i in range(n))


def smollm2_folder(root: Path | None = None, seed: int = 0) -> Path:
    """A randomly initialised SmolLM2-135M-shaped Llama (30 layers, hidden 576, vocab 49,152)."""
    root = Path(root or tempfile.mkdtemp(prefix="fx-smollm2-"))
    folder = root / "smollm2-135m-random"
    if (folder / "model.safetensors").is_file():
        return folder
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=2, eos_token_id=3, pad_token_id=0)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    synthetic_tokenizer(49152).save_pretrained(folder)
    return folder


GEMMA3_VOCAB = 262144


def gemma3_270m_folder(root: Path | None = None, seed: int = 0, with_lora: bool = False) -> Path:
    """A randomly initialised Gemma-3-270M-shaped model (18 layers, hidden 640, a 262,144-token
    vocabulary: 268M parameters, 168M of them the tied embedding) with a word-level tokenizer
    of the same size, saved once under `root` (default: the user's cache, 1 GB); returns the
    family folder (the model, and with `with_lora` a rank-8 LoRA adapter beside it)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    root = Path(root or Path.home() / ".cache" / "model-family-explorer" / "synthetic")
    family = root / "gemma3-270m-random"
    folder = family / "gemma3-270m"
    if not (folder / "model.safetensors").is_file():
        torch.manual_seed(seed)
        layer_types = (["sliding_attention"] * 5 + ["full_attention"]) * 3
        config = Gemma3TextConfig(vocab_size=GEMMA3_VOCAB, hidden_size=640, intermediate_size=2048,
                                  num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
                                  head_dim=256, layer_types=layer_types, sliding_window=512,
                                  max_position_embeddings=32768, query_pre_attn_scalar=256,
                                  tie_word_embeddings=True, bos_token_id=2, eos_token_id=3, pad_token_id=0)  # fmt: skip
        Gemma3ForCausalLM(config).save_pretrained(folder)
        synthetic_tokenizer(GEMMA3_VOCAB).save_pretrained(folder)
    if with_lora and not (family / "gemma3-270m-lora" / "adapter_model.safetensors").is_file():
        save_lora(folder, family / "gemma3-270m-lora", seed)
    return family if with_lora else folder


def save_lora(base: Path, out: Path, seed: int = 0) -> None:
    """A rank-8 LoRA on the attention projections with random (non-zero) weights, its model
    card naming `base` so that folder discovery finds the pair."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed + 1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))  # fmt: skip
    model.peft_config["default"].base_model_name_or_path = base.name
    model.save_pretrained(out)
    (out / "README.md").write_text(f"---\nbase_model: {base.name}\nbase_model_relation: adapter\n---\n")
