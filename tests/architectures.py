"""Tiny families of every decoder architecture users bring, built from transformers configs.

Each family is a folder of three members found through their model cards: the randomly
initialised base (safetensors), a LoRA adapter on every linear layer (peft, random non-zero B so
it changes the outputs) and a fine-tuned copy whose change is confined to the last block by
construction, so where the change lives has a known answer on every architecture.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

WORDS = "the a fox cat dog went to river sun rain is was day night happy sad . , and it ended"
PROMPT, RESPONSE = "the fox went to the river and the cat", " was happy . it ended"

LLAMA_LIKE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128)  # fmt: skip
GEMMA_LAYERS = dict(head_dim=8, sliding_window=6, layer_types=["sliding_attention", "full_attention"])
LINEAR_ATTENTION = dict(num_hidden_layers=4, head_dim=8, linear_num_key_heads=2, linear_num_value_heads=2,
                        linear_key_head_dim=8, linear_value_head_dim=8)  # fmt: skip
PER_LAYER_EMBEDDINGS = dict(hidden_size_per_layer_input=8)  # Gemma 4: a second embedding per block
# Gemma 2 soft-caps its logits (at 30; at 1 here, so tiny random logits feel it: a lens that
# forgot it would be off by far more than rounding).
# Per architecture: the model type for `AutoConfig.for_model` and the config it gets. Sliding
# windows are made shorter than the text (prompt + response are 14 tokens) so the sliding-window
# layers really slide, as a 512-token window does on a long chat with a real Gemma 3.
ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "Llama": ("llama", LLAMA_LIKE),
    "Mistral": ("mistral", {**LLAMA_LIKE, "sliding_window": 6}),
    "Qwen2": ("qwen2", LLAMA_LIKE),
    "Qwen3": ("qwen3", {**LLAMA_LIKE, "head_dim": 8, "tie_word_embeddings": True}),
    "Gemma 2": ("gemma2", {**LLAMA_LIKE, **GEMMA_LAYERS, "final_logit_softcapping": 1.0}),
    "Gemma 3": ("gemma3_text", {**LLAMA_LIKE, **GEMMA_LAYERS}),
    "Phi-3": ("phi3", LLAMA_LIKE),
    "GPT-2": ("gpt2", dict(n_embd=32, n_inner=64, n_layer=2, n_head=4, n_positions=128)),
    "GPT-NeoX": ("gpt_neox", {k: v for k, v in LLAMA_LIKE.items() if k != "num_key_value_heads"}),
    "OLMo 2": ("olmo2", LLAMA_LIKE),
    "Gemma 4": ("gemma4_text", {**LLAMA_LIKE, **GEMMA_LAYERS, "global_head_dim": 8, **PER_LAYER_EMBEDDINGS}),
    "Qwen3.5": ("qwen3_5_text", {**LLAMA_LIKE, **LINEAR_ATTENTION}),  # 3 linear-attention blocks, 1 full
    "Mamba": ("mamba", dict(hidden_size=32, num_hidden_layers=2, state_size=4, expand=2, conv_kernel=4)),
}
LORA_TARGETS = {"Mamba": ["in_proj", "x_proj", "dt_proj"]}  # peft refuses Mamba's out_proj; else all-linear
# What an architecture cannot do, and the sentence it says instead (the test asserts it; the
# README's table shows it). A Mamba block is one state-space mixer: no attention, no MLP.
ATTENTION_FREE = "has no attention weights to show: a MambaForCausalLM is not built from attention; use a gradient method or occlusion"
CANNOT = {
    ("Mamba", "attention"): ATTENTION_FREE,
    ("Mamba", "attention_rollout"): ATTENTION_FREE,
    ("Mamba", "patch attention"): "this model's blocks (MambaBlock) have no attention module of their own; patch whole blocks (site='block')",
    ("Mamba", "patch mlp"): "this model's blocks (MambaBlock) have no mlp module of their own; patch whole blocks (site='block')",
}


def byte_bpe() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2, Llama 3, Qwen and OLMo use one) of ~320 tokens, trained
    here on the words above. transformers rebuilds a `qwen2` folder's tokenizer as its own
    Qwen2Tokenizer from the vocabulary and merges whatever the folder says; a byte-level BPE
    comes out of that the same, so every member of every family tokenizes alike."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<bos>", "<eos>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator([WORDS] * 10 + [PROMPT + RESPONSE] * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   padding_side="left")  # fmt: skip


def slug(name: str) -> str:
    return name.lower().replace(" ", "").replace("-", "")


def labels(name: str) -> tuple[str, str, str]:
    """The labels of the family's base, LoRA adapter and fine-tuned copy."""
    s = slug(name)
    return f"{s}-base", f"{s}-lora", f"{s}-tuned"


def card(folder: Path, base: str | None, relation: str | None) -> None:
    lines = ["---", "license: mit", "pipeline_tag: text-generation"]
    if base:
        lines += [f"base_model: {base}", f"base_model_relation: {relation}"]
    (folder / "README.md").write_text("\n".join([*lines, "---", f"# {folder.name}", ""]))


def build_family(root: Path, name: str, seed: int = 0) -> Path:
    """Save the three members of `name`'s family under `root`; returns `root`. The embedding
    table has a few rows more than the tokenizer has tokens, as real ones do (Qwen2.5: 151,936
    rows, 151,665 tokens): a Qwen2Tokenizer adds one of its own."""
    model_type, sizes = ARCHITECTURES[name]
    base_label, lora_label, tuned_label = labels(name)
    tok = byte_bpe()
    vocab = len(tok) + 12
    if "hidden_size_per_layer_input" in sizes:  # its table has a vocabulary of its own (262,144 rows)
        sizes = {**sizes, "vocab_size_per_layer_input": vocab}
    config = AutoConfig.for_model(model_type, vocab_size=vocab, bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **sizes)  # fmt: skip
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    save(model, tok, root / base_label, None, None)
    save(lora(model, base_label, LORA_TARGETS.get(name, "all-linear")), None, root / lora_label, base_label, "adapter")
    save(last_block_tuned(model), tok, root / tuned_label, base_label, "finetune")
    return root


def save(model, tok, folder: Path, base: str | None, relation: str | None) -> None:
    """The weights, the tokenizer (an adapter has none: it uses its base's, the same class
    whatever transformers makes of a folder without a config) and the card."""
    model.save_pretrained(folder)
    if tok is not None:
        tok.save_pretrained(folder)
    card(folder, base, relation)


def lora(model, base_label: str, targets: str | list[str]):
    """A LoRA adapter on `targets` (every linear layer but the head), B random so it acts."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False, lora_dropout=0.0)
    adapted = get_peft_model(copy.deepcopy(model), config)
    with torch.no_grad():  # trained adapters move a model a little: B at a tenth of peft's random init
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.mul_(0.1)
    adapted.peft_config["default"].base_model_name_or_path = base_label
    return adapted


def last_block_tuned(model):
    """A copy whose last block's weights moved (and nothing else: the truth the tests check)."""
    tuned = copy.deepcopy(model)
    last = str(last_block_index(tuned))
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if f".{last}." in f".{name}." and block_parameter(name):
                p.add_(0.1 * torch.randn_like(p))
    return tuned


def block_parameter(name: str) -> bool:
    return any(f".{part}." in name for part in ("layers", "h"))


def last_block_index(model) -> int:
    return model.config.get_text_config().num_hidden_layers - 1


# More decoders, each a lone base: the lens and gradients must find their way around each. Names
# of blocks and norms differ (MPT's `norm_f`, XGLM's `layer_norm`, Llama 4's decoder), and so do
# their heads (Cohere multiplies the logits by `logit_scale`, Granite divides by `logits_scaling`).
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
MORE: dict[str, dict] = {
    "mpt": dict(d_model=32, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=64),
    "xglm": dict(d_model=32, ffn_dim=64, num_layers=2, attention_heads=4),
    "opt": dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, word_embed_proj_dim=32),
    "falcon": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4),
    "bloom": dict(hidden_size=32, n_layer=2, n_head=4),
    "gptj": dict(n_embd=32, n_layer=2, n_head=4, rotary_dim=4),
    "phi": SMALL,
    "starcoder2": {**SMALL, "num_key_value_heads": 2},
    "cohere": SMALL,
    "granite": {**SMALL, "logits_scaling": 4.0},
    "olmo3": {**SMALL, "num_key_value_heads": 2},
    "smollm3": {**SMALL, "num_key_value_heads": 2},
    "qwen3_moe": {**SMALL, "num_key_value_heads": 2, "moe_intermediate_size": 32, "num_experts": 4, "num_experts_per_tok": 2},
    "lfm2": {**SMALL, "num_key_value_heads": 2},
    "llama4_text": {**SMALL, "num_key_value_heads": 2, "head_dim": 8},
}


def build_single(root: Path, model_type: str, seed: int = 0) -> Path:
    """One randomly initialised base of `model_type` (MORE) with its tokenizer; the folder."""
    tok = byte_bpe()
    config = AutoConfig.for_model(model_type, vocab_size=len(tok) + 12, bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **MORE[model_type])  # fmt: skip
    torch.manual_seed(seed)
    folder = root / f"{model_type.replace('_', '-')}-base"
    save(AutoModelForCausalLM.from_config(config).eval(), tok, folder, None, None)
    return folder
