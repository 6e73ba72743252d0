"""A large vocabulary: a Gemma-3-270M-shaped model (18 blocks, hidden 640, 262,144 tokens; random
weights, built from its config by tests/synthetic.py and kept in the user's cache) with a LoRA
descendant. Rows:
- sampling: `fx.sample` against a bare `generate` with the same settings and input (tokens per
  second, medians of alternating runs; goal ≥ 0.9×);
- grad×input: `fx.attribute` against Captum's `LLMGradientAttribution(LayerGradientXActivation)`
  (medians of alternating runs; goal ≥ 3×);
- the estimate: the first `fx.estimate` (its probes included) of grad×input in both models and of
  sampling, against the work it prices;
- peak memory (resident set, sampled every 2 ms by a thread, above what was resident before;
  in a child process whose large allocations are returned to the system when freed,
  `MALLOC_MMAP_THRESHOLD_=65536`, so that one measurement does not reuse another's freed
  pages; after one forward pass of every model, whose weights are mapped from their files and
  would otherwise count where they are first read): sampling 64 × 24 against `generate` returning every step's scores and logits (what
  the explorer asked of it before, without the copies it then made of them), the lens in slices
  against the same lens whole, grad×input against Captum.

    python benchmarks/bench_bigvocab.py [--repeats 3] [--n 16] [--tokens 24] [--skip-memory] [--memory-only]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_attribution import captum_gradient, timed_pair  # noqa: E402
from bench_sampling import alternate, bare  # noqa: E402
from bench_sampling import ours as ours_sampling  # noqa: E402
from synthetic import gemma3_270m_folder, words  # noqa: E402

import explorer as fx  # noqa: E402
from explorer.core import timing, vocab  # noqa: E402
from explorer.core.member import encode_prompt, model_input  # noqa: E402
from explorer.core.store import ModelStore  # noqa: E402

PROMPT, RESPONSE = words(16), words(24, offset=900)
PAGE = os.sysconf("SC_PAGE_SIZE")


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def peak_mib(fn) -> float:
    """MiB resident at the peak of `fn()` above what was resident before it."""
    gc.collect()
    before, top, done = resident(), [0], threading.Event()

    def watch():
        while not done.is_set():
            top[0] = max(top[0], resident())
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        fn()
    finally:
        done.set()
        watcher.join()
    return max(top[0] - before, 0) / 2**20


def sampling_row(family, label: str, n: int, tokens: int, repeats: int) -> dict:
    member = family.load(label)
    ids = encode_prompt(member, model_input(member, PROMPT, "auto"), tokens).to(member.device)
    rates = alternate({"ours": lambda: ours_sampling(family, label, PROMPT, n, tokens),
                       "bare": lambda: bare(member, ids, n, tokens)}, repeats)  # fmt: skip
    return {"work": f"sampling {n} × {tokens} (tok/s)", "ours": rates["ours"], "peer": rates["bare"],
            "peer_name": "bare generate", "ratio": rates["ours"] / rates["bare"], "goal": "≥ 0.9×"}  # fmt: skip


def gradient_row(family, label: str, repeats: int) -> dict:
    from captum.attr import LayerGradientXActivation

    member = family.load(label)
    model, tok = member.model, member.tokenizer
    target = torch.tensor(tok(RESPONSE, add_special_tokens=False)["input_ids"])
    layer = LayerGradientXActivation(model, model.get_input_embeddings())
    ours_s, peer_s, _, _ = timed_pair(
        lambda: fx.attribute(family, PROMPT, RESPONSE, method="grad_x_input", models=[label], sources="prompt"),
        lambda: captum_gradient(model, tok, PROMPT, target, layer), repeats)  # fmt: skip
    return {"work": f"grad×input, {len(target)} targets (s)", "ours": ours_s, "peer": peer_s,
            "peer_name": "Captum LLMGradientAttribution", "ratio": peer_s / ours_s, "goal": "≥ 3×"}  # fmt: skip


def estimate_rows(family, n: int, tokens: int) -> list[dict]:
    """The first estimate (probes included) of each work against the work itself."""
    rows = []
    works = {
        "grad×input, 2 models": (dict(what="attribute", prompt=PROMPT, response=RESPONSE, method="grad_x_input"),
                                 lambda: fx.attribute(family, PROMPT, RESPONSE, method="grad_x_input")),
        f"sampling {n} × {tokens}, 2 models": (dict(what="sample", prompt=PROMPT, n=n, max_new_tokens=tokens),
                                              lambda: fx.sample(family, PROMPT, n=n, max_new_tokens=tokens, seed=1)),
    }  # fmt: skip
    for name, (args, work) in works.items():
        timing._timings.clear()
        began = time.perf_counter()
        est = fx.estimate(family, args.pop("what"), **args)
        cost = time.perf_counter() - began
        began = time.perf_counter()
        work()
        seconds = time.perf_counter() - began
        rows.append({"work": f"estimate of {name}", "estimate": est.seconds, "measured": seconds,
                     "cost": cost, "share": cost / seconds})  # fmt: skip
        print(f"| {name} | {cost:.3f} | {est.seconds:.2f} | {seconds:.2f} | {est.seconds / seconds:.2f}× | "
              f"{cost / seconds:.1%} |", flush=True)  # fmt: skip
    return rows


def memory_rows(family, label: str) -> list[tuple[str, float, str, float]]:
    """(ours, MiB, peer, MiB) per work, each measured alone."""
    from captum.attr import LayerGradientXActivation

    member = family.load(label)
    ids = encode_prompt(member, model_input(member, PROMPT, "auto"), 24).to(member.device)
    for name in family.labels:  # the weights are mapped from their files: read them all in first
        with torch.no_grad():
            family.load(name).model(input_ids=ids)

    def generate_with_scores():
        with torch.no_grad():
            member.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                                  max_new_tokens=24, num_return_sequences=64, pad_token_id=0,
                                  return_dict_in_generate=True, output_scores=True, output_logits=True)  # fmt: skip

    def whole_lens():
        saved, vocab.CHUNK_ELEMENTS = vocab.CHUNK_ELEMENTS, 10**12
        try:
            fx.layer_lens(family, PROMPT, RESPONSE)
        finally:
            vocab.CHUNK_ELEMENTS = saved

    model, tok = member.model, member.tokenizer
    target = torch.tensor(tok(RESPONSE, add_special_tokens=False)["input_ids"])
    layer = LayerGradientXActivation(model, model.get_input_embeddings())
    pairs = [
        ("sampling 64 × 24", lambda: fx.sample(family, PROMPT, n=64, max_new_tokens=24, models=[label], seed=2),
         "generate keeping every step's scores and logits", generate_with_scores),
        ("layer lens, 2 models", lambda: fx.layer_lens(family, PROMPT, RESPONSE), "the same lens whole", whole_lens),
        ("grad×input", lambda: fx.attribute(family, PROMPT, RESPONSE, method="grad_x_input", models=[label]),
         "Captum LLMGradientAttribution", lambda: captum_gradient(model, tok, PROMPT, target, layer)),
    ]  # fmt: skip
    rows = []
    for work, ours_fn, peer, peer_fn in pairs:
        rows.append((work, peak_mib(ours_fn), peer, peak_mib(peer_fn)))
        print(f"| {work} | {rows[-1][1]:.0f} | {peer} | {rows[-1][3]:.0f} |", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-only", action="store_true", help="only the peak-memory rows, in this process")
    args = parser.parse_args()
    family = fx.load_family(gemma3_270m_folder(with_lora=True), store=ModelStore())
    if args.memory_only:
        print("| work | peak MiB | peer | peak MiB |\n|---|---|---|---|")
        memory_rows(family, family.base.label)
        return
    label = family.base.label
    for name in family.labels:
        family.load(name)
    params = sum(p.numel() for p in family.load(label).model.parameters())
    print(f"\n{label}: {params / 1e6:.0f}M parameters, vocabulary {len(family.load(label).tokenizer)}, "
          f"torch threads {torch.get_num_threads()}, medians of {args.repeats} alternating runs\n")  # fmt: skip
    print("| work | ours | peer | peer value | ours / peer | goal |")
    print("|---|---|---|---|---|---|")
    for row in (sampling_row(family, label, args.n, args.tokens, args.repeats), gradient_row(family, label, args.repeats)):
        ratio = row["ratio"]
        print(f"| {row['work']} | {row['ours']:.2f} | {row['peer_name']} | {row['peer']:.2f} | {ratio:.2f}× | {row['goal']} |",
              flush=True)  # fmt: skip
    print("\n| first estimate of | its cost (s) | estimate (s) | measured (s) | estimate / measured | cost / work |")
    print("|---|---|---|---|---|---|")
    estimate_rows(family, args.n, args.tokens)
    if not args.skip_memory:
        del family
        gc.collect()
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        print(flush=True)
        subprocess.run([sys.executable, __file__, "--memory-only"], env=env, check=True)


if __name__ == "__main__":
    main()
