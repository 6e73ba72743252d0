"""Build the fable family: train every member and write standard transformers folders with model
cards (hub-style `base_model:` front matter) and the probes file."""

from __future__ import annotations

import copy
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import GenerationConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from explorer.zoo import cards
from explorer.zoo.language import BASE, CHEERFUL, INSTRUCT, LATE, MID, PIRATE, RARE, Recipe
from explorer.zoo.probes import all_probes
from explorer.zoo.tokenizer import build_tokenizer
from explorer.zoo.train import (
    Schedule,
    distill_loss,
    llama_config,
    lm_loss,
    new_model,
    run_loop,
    text_batches,
)

LORA_TARGETS = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "lm_head",
]


@dataclass(frozen=True)
class BuildPlan:
    """Sizes and step counts; `quick` keeps the same shapes with far fewer steps."""

    base: Schedule
    cheerful: Schedule
    instruct: Schedule
    distilled: Schedule
    pirate: Schedule
    late: Schedule
    mid: Schedule
    rare: Schedule
    hidden: int = 128
    layers: int = 4
    heads: int = 2
    student_hidden: int = 64
    student_layers: int = 2
    lora_rank: int = 8


FULL = BuildPlan(
    base=Schedule(steps=4000, lr=3e-3),
    cheerful=Schedule(steps=800, lr=1e-3, warmup=50),
    instruct=Schedule(steps=300, lr=1e-3, warmup=50),
    distilled=Schedule(steps=3000, lr=3e-3),
    pirate=Schedule(steps=2000, lr=3e-3, warmup=50),
    late=Schedule(steps=1500, lr=3e-3, warmup=50),
    mid=Schedule(steps=1500, lr=3e-3, warmup=50),
    rare=Schedule(steps=800, lr=1e-3, warmup=50),
)
QUICK = BuildPlan(
    base=Schedule(steps=150, lr=3e-3, warmup=20),
    cheerful=Schedule(steps=30, lr=1e-3, warmup=5),
    instruct=Schedule(steps=30, lr=1e-3, warmup=5),
    distilled=Schedule(steps=60, lr=3e-3, warmup=10),
    pirate=Schedule(steps=30, lr=3e-3, warmup=5),
    late=Schedule(steps=30, lr=3e-3, warmup=5),
    mid=Schedule(steps=30, lr=3e-3, warmup=5),
    rare=Schedule(steps=30, lr=1e-3, warmup=5),
)


def save_member(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, out: Path, name: str
) -> Path:
    """A standard folder: weights (safetensors), config, tokenizer, generation config, card."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(model, peft.PeftModel):
        # The adapter touches no embeddings; saying so spares peft a hub look-up.
        model.save_pretrained(folder, save_embedding_layers=False)
    else:
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if isinstance(model, LlamaForCausalLM):
        GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ).save_pretrained(folder)
    (folder / "README.md").write_text(cards.model_card(name))
    return folder


def finetune(
    base: LlamaForCausalLM,
    recipe: Recipe,
    tok,
    schedule: Schedule,
    seed: int,
    quiet: bool,
    name: str,
    trainable: Callable[[LlamaForCausalLM], torch.nn.Module] | None = None,
) -> tuple[LlamaForCausalLM, list[float]]:
    """A copy of `base` trained on `recipe`: every weight, or only `trainable(model)`'s (the
    rest frozen for the run, and thawed again in the copy returned)."""
    model = copy.deepcopy(base)
    if trainable is not None:
        for param in model.parameters():
            param.requires_grad_(False)
        for param in trainable(model).parameters():
            param.requires_grad_(True)
    batches = text_batches(recipe, tok, schedule, seed)
    losses = run_loop(model, batches, schedule, lm_loss, name, quiet)
    for param in model.parameters():
        param.requires_grad_(True)
    return model, losses


def build_pirate(
    base: LlamaForCausalLM,
    tok: PreTrainedTokenizerFast,
    plan: BuildPlan,
    seed: int,
    out: Path,
    quiet: bool,
) -> list[float]:
    """The LoRA adapter: attention, MLP and output projections (the output head too, because
    the base ranks words it only ever heard from a parrot far below its greetings: moving the
    hidden state alone cannot lift them to a style's rates)."""
    lora = LoraConfig(
        r=plan.lora_rank,
        lora_alpha=2 * plan.lora_rank,
        target_modules=LORA_TARGETS,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed + 20)
    pirate = get_peft_model(copy.deepcopy(base), lora)
    batches = text_batches(PIRATE, tok, plan.pirate, seed + 21)
    losses = run_loop(pirate, batches, plan.pirate, lm_loss, "fable-pirate", quiet)
    pirate.peft_config["default"].base_model_name_or_path = "fable-base"
    save_member(pirate, tok, out, "fable-pirate")
    return losses


def build_confined(
    base: LlamaForCausalLM, tok: PreTrainedTokenizerFast, name: str, recipe: Recipe,
    schedule: Schedule, block: int, seed: int, out: Path, quiet: bool,
) -> list[float]:  # fmt: skip
    """A fine-tune whose change is confined by construction: every parameter but block
    `block`'s is frozen (embeddings, the other blocks, final norm, head), so the layer-wise
    tools have a known place to find — the residual stream is the base's before that block,
    and the base's own later blocks carry the change to the output. fable-late trains the last
    block; fable-mid block 1, so "where the change enters" is not the trivial last block."""
    model, losses = finetune(base, recipe, tok, schedule, seed, quiet, name,
                             trainable=lambda model: model.model.layers[block])  # fmt: skip
    save_member(model, tok, out, name)
    return losses


def build_family(
    out: Path, quick: bool = False, seed: int = 0, quiet: bool = False
) -> dict[str, Any]:
    """Train all members into `out`; returns the build manifest (also written there)."""
    plan = QUICK if quick else FULL
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    losses, sizes = train_members(out, plan, build_tokenizer(), seed, quiet)
    (out / "probes.json").write_text(json.dumps(all_probes(), indent=1))
    manifest = {
        "seed": seed,
        "quick": quick,
        "seconds": round(time.perf_counter() - started, 1),
        "final_loss": {k: round(sum(v[-50:]) / len(v[-50:]), 4) for k, v in losses.items()},
        "parameters": sizes,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "python": platform.python_version()},  # fmt: skip
    }
    (out / "build.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def train_members(out: Path, plan, tok, seed: int, quiet: bool) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Every member trained and saved; their loss curves and the parameter counts."""
    losses: dict[str, list[float]] = {}
    torch.manual_seed(seed)
    base = new_model(llama_config(tok, plan.hidden, plan.layers, plan.heads), seed)
    losses["fable-base"] = run_loop(
        base, text_batches(BASE, tok, plan.base, seed), plan.base, lm_loss, "fable-base", quiet
    )
    base.config._name_or_path = "fable-base"
    save_member(base, tok, out, "fable-base")
    for name, recipe, schedule in (
        ("fable-cheerful", CHEERFUL, plan.cheerful),
        ("fable-instruct", INSTRUCT, plan.instruct),
    ):
        model, losses[name] = finetune(base, recipe, tok, schedule, seed + len(losses), quiet, name)
        save_member(model, tok, out, name)
    student = new_model(llama_config(tok, plan.student_hidden, plan.student_layers, 1), seed + 10)
    batches = text_batches(BASE, tok, plan.distilled, seed + 11)
    losses["fable-distilled"] = run_loop(
        student, batches, plan.distilled, distill_loss(base.eval()), "fable-distilled", quiet
    )
    save_member(student, tok, out, "fable-distilled")
    losses["fable-pirate"] = build_pirate(base, tok, plan, seed, out, quiet)
    losses["fable-late"] = build_confined(base, tok, "fable-late", LATE, plan.late, -1, seed + 30, out, quiet)
    losses["fable-mid"] = build_confined(base, tok, "fable-mid", MID, plan.mid, 1, seed + 40, out, quiet)
    rare, losses["fable-rare"] = finetune(base, RARE, tok, plan.rare, seed + 50, quiet, "fable-rare")
    save_member(rare, tok, out, "fable-rare")
    sizes = {"fable-base": sum(p.numel() for p in base.parameters()),
             "fable-distilled": sum(p.numel() for p in student.parameters())}  # fmt: skip
    return losses, sizes
