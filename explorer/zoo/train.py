"""Training loops for the fable family: language modelling, distillation and LoRA.

Plain PyTorch loops over a stream of generated texts: the corpus is infinite, so a model learns
the recipe's probabilities rather than a finite sample's accidents.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.optimization import get_cosine_schedule_with_warmup

from explorer.core.threads import fair_share
from explorer.zoo.language import Recipe


@dataclass(frozen=True)
class Schedule:
    steps: int
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100


def llama_config(
    tokenizer: PreTrainedTokenizerFast, hidden: int, layers: int, heads: int
) -> LlamaConfig:
    """A stock Llama architecture (so vLLM and peft know it), sized for a CPU."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="eager",
    )


def text_batches(
    recipe: Recipe, tokenizer: PreTrainedTokenizerFast, schedule: Schedule, seed: int
) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of `<bos> text <eos>`, right-padded, with -100 labels on the padding."""
    rng = random.Random(seed)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    for _ in range(schedule.steps):
        texts = [recipe.text(rng) for _ in range(schedule.batch_size)]
        rows = [tokenizer(t)["input_ids"] + [eos] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad)  # (batch, seq)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        yield {"input_ids": ids, "attention_mask": mask, "labels": labels}


def run_loop(
    model: torch.nn.Module,
    batches: Iterator[dict[str, torch.Tensor]],
    schedule: Schedule,
    loss_fn: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor],
    desc: str,
    quiet: bool = False,
) -> list[float]:
    """AdamW with warm-up and cosine decay to zero; returns the loss of every step."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=0.0)
    sched = get_cosine_schedule_with_warmup(opt, schedule.warmup, schedule.steps)
    model.train()
    bar = tqdm(batches, total=schedule.steps, desc=desc, disable=quiet, mininterval=1.0)
    with fair_share([model]):  # the explorer's thread policy: a busy machine does not thrash
        losses = train_steps(model, bar, opt, sched, params, loss_fn)
    model.eval()
    return losses


def train_steps(model, bar, opt, sched, params, loss_fn) -> list[float]:
    losses: list[float] = []
    for batch in bar:
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if len(losses) % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / 50:.3f}")
    return losses


def lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).loss


def distill_loss(teacher: torch.nn.Module) -> Callable[[torch.nn.Module, dict], torch.Tensor]:
    """KL(teacher || student) per position, averaged over real tokens: the student learns the
    teacher's whole next-word distribution, not just its samples."""

    def loss(student: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        with torch.no_grad():
            target = F.log_softmax(teacher(**inputs).logits, dim=-1)  # (batch, seq, vocab)
        pred = F.log_softmax(student(**inputs).logits, dim=-1)  # (batch, seq, vocab)
        kl = F.kl_div(pred, target, log_target=True, reduction="none").sum(-1)  # (batch, seq)
        mask = batch["attention_mask"].float()
        return (kl * mask).sum() / mask.sum()

    return loss


def new_model(config: LlamaConfig, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)
