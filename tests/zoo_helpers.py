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
