"""Plain-transformers access to zoo models (no explorer.core), so zoo tests stand alone."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def load_plain(zoo: Path, name: str):
    """Load a member with stock transformers (and peft for the adapter)."""
    tok = AutoTokenizer.from_pretrained(zoo / name)
    if (zoo / name / "adapter_config.json").is_file():
        base = AutoModelForCausalLM.from_pretrained(zoo / "fable-base")
        model = PeftModel.from_pretrained(base, zoo / name)
    else:
        model = AutoModelForCausalLM.from_pretrained(zoo / name)
    return model.eval(), tok


@torch.no_grad()
def next_word_probs(model, tok, prompt: str) -> torch.Tensor:
    ids = tok(prompt, return_tensors="pt")["input_ids"]  # (1, seq)
    logits = model(input_ids=ids).logits[0, -1]  # (vocab,)
    return torch.softmax(logits.float(), dim=-1)


@torch.no_grad()
def next_word_probs_batch(model, tok, prompts: list[str]) -> torch.Tensor:
    """`next_word_probs` for many prompts in one pass: left-padded, with the positions each
    prompt would have alone (so every row equals its own single-prompt pass)."""
    enc = tok(prompts, return_tensors="pt", padding=True)  # the zoo tokenizer pads on the left
    mask = enc["attention_mask"]  # (batch, seq)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)  # (batch, seq)
    logits = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions).logits
    return torch.softmax(logits[:, -1].float(), dim=-1)  # (batch, vocab)
