"""Tiny models built inside tests (no download): odd architectures, hostile configs, pickles."""

from __future__ import annotations

from pathlib import Path

import torch
from synthetic import word_tokenizer
from transformers import BertConfig, BertModel, GenerationConfig, LlamaConfig, LlamaForCausalLM


def tiny_llama(folder: Path, tokenizer, seed: int = 0, **generation) -> Path:
    """A randomly initialised 2-layer Llama on `tokenizer`, saved as safetensors."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if generation:
        GenerationConfig(**generation).save_pretrained(folder)
    return folder


def pickled_llama(folder: Path, tokenizer) -> Path:
    """The same tiny model, but with its weights only as a pickled `pytorch_model.bin`."""
    tiny_llama(folder, tokenizer)
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def tiny_bert(folder: Path, tokenizer) -> Path:
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)  # fmt: skip
    model = BertModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


HOSTILE = [
    "<script>alert(1)</script>",
    "<img/src=x/onerror=alert(2)>",
    "</div>",
    "<b>bold</b>",
    "</select>",
    "&amp;",
]


def hostile_family(root: Path) -> Path:
    """A base and a 'fine-tune' whose vocabularies are mostly HTML and script payloads."""
    tok = word_tokenizer(["hello", "world", *HOSTILE])
    tiny_llama(root / "hostile-base", tok, seed=1)
    child = tiny_llama(root / "hostile-tuned", tok, seed=2)
    (child / "README.md").write_text(
        "---\nbase_model: hostile-base\nbase_model_relation: finetune\n---\n"
    )
    return root


def char_tokenizer():
    """A character-level tokenizer (a token per non-space character): words span many tokens,
    unlike the fable zoo's word-level one."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyz.,!?'")
    vocab = {c: i for i, c in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", *chars])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 2)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                                   pad_token="<pad>", padding_side="left")  # fmt: skip
