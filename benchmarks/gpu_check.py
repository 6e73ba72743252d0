"""The explorer on a GPU: sampling, grad×input, patching and the layer lens on a
SmolLM2-135M-shaped and a ~1B-parameter Llama-shaped model (Llama 3.2 1B's shape, a 128k
vocabulary), in bfloat16 and float32, against bare `generate` and Captum on the same device,
with peak GPU memory. The models are built from their configs with random weights (speed and
memory do not depend on the values), each with a rank-8 LoRA descendant (the patching donor),
saved under a temporary folder. Prints a Markdown table; a few minutes on one GPU.

    python benchmarks/gpu_check.py                       # cuda, both models, both dtypes
    python benchmarks/gpu_check.py --device cpu --smoke  # tiny models on the CPU: seconds

Rows: `ours (s)` and `peer (s)` are medians of alternating runs after a warm-up; `speed-up` is
peer / ours (sampling: the same settings, input and number of new tokens, so it is also the
ratio of tokens per second);
`peak MiB` is `torch.cuda.max_memory_allocated` during our run and the peer's (n/a on a CPU).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the machine may reach nothing: no hub look-ups
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import explorer as fx  # noqa: E402
from explorer.core.member import encode_prompt, model_input  # noqa: E402
from explorer.core.store import ModelStore  # noqa: E402

SHAPES = {  # name: LlamaConfig keywords
    "SmolLM2-135M shape": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                               num_attention_heads=9, num_key_value_heads=3),
    "Llama-3.2-1B shape": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                               num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0),
}  # fmt: skip
SMOKE = {
    "tiny SmolLM2 shape": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                               num_attention_heads=4, num_key_value_heads=2),
    "tiny Llama shape": dict(vocab_size=1024, hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2),
}  # fmt: skip


def build_family(root: Path, name: str, shape: dict, device: str) -> Path:
    """A family folder: the model (random weights, bfloat16 on disk) and a LoRA adapter."""
    from peft import LoraConfig, get_peft_model
    from synthetic import synthetic_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = root / name.replace(" ", "-").replace(".", "")
    base, adapter = folder / "base", folder / "lora"
    torch.manual_seed(0)
    config = LlamaConfig(max_position_embeddings=2048, tie_word_embeddings=True, bos_token_id=2,
                         eos_token_id=3, pad_token_id=0, **shape)  # fmt: skip
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(base)
    synthetic_tokenizer(shape["vocab_size"]).save_pretrained(base)
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    lora = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.peft_config["default"].base_model_name_or_path = "base"
    lora.save_pretrained(adapter)
    (adapter / "README.md").write_text("---\nbase_model: base\nbase_model_relation: adapter\n---\n")
    del model, lora
    return folder


def peak(device: str):
    """A context that measures the peak GPU memory (MiB) of what runs inside it."""

    class Peak:
        mib = float("nan")

        def __enter__(self):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            return self

        def __exit__(self, *exc):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
                self.mib = torch.cuda.max_memory_allocated() / 2**20

    return Peak()


def timed(fns: dict, repeats: int, device: str) -> dict[str, tuple[float, float]]:
    """Median seconds and peak MiB of each function, run in turn after a warm-up each."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    peaks = dict.fromkeys(fns, float("nan"))
    for _ in range(repeats):
        for name, fn in fns.items():
            with peak(device) as p:
                began = time.perf_counter()
                fn()
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - began)
            peaks[name] = p.mib
    return {k: (statistics.median(v), peaks[k]) for k, v in times.items()}


def check_model(folder: Path, name: str, dtype: str, device: str, args) -> list[dict]:
    """Sampling, grad×input, patching and the lens of one model in one dtype."""
    from bench_attribution import captum_gradient
    from bench_sampling import bare
    from captum.attr import LayerGradientXActivation
    from synthetic import words

    family = fx.load_family(folder, store=ModelStore(device=device, dtype=dtype))
    label, donor = family.base.label, family.labels[1]
    member = family.load(label)
    prompt, response = words(args.prompt_tokens), words(args.response_tokens, offset=900)
    ids = encode_prompt(member, model_input(member, prompt, "auto"), args.new_tokens).to(member.device)
    rows = []

    def row(work, result, peer_name=None):
        (ours, ours_mib), (peer, peer_mib) = result["ours"], result.get("peer", (float("nan"),) * 2)
        speed = peer / ours
        rows.append({"model": name, "dtype": dtype, "work": work, "ours": ours, "peer": peer, "peer_name": peer_name or "—",
                     "speedup": speed, "ours_mib": ours_mib, "peer_mib": peer_mib})  # fmt: skip
        print_row(rows[-1])

    seed = iter(range(10**6))
    sampled = timed({"ours": lambda: fx.sample(family, prompt, n=args.n, max_new_tokens=args.new_tokens,
                                               models=[label], seed=next(seed)),
                     "peer": lambda: bare(member, ids, args.n, args.new_tokens)}, args.repeats, device)  # fmt: skip
    row(f"sampling {args.n} × {args.new_tokens} tokens", sampled, "bare generate")
    model, tok = member.model, member.tokenizer
    target = torch.tensor(tok(response, add_special_tokens=False)["input_ids"])
    gxi = timed({"ours": lambda: fx.attribute(family, prompt, response, method="grad_x_input", models=[label], sources="prompt"),
                 "peer": lambda: captum_gradient(model, tok, prompt, target, LayerGradientXActivation(model, model.get_input_embeddings()))},
                args.repeats, device)  # fmt: skip
    row(f"grad×input, {args.response_tokens} targets", gxi, "Captum LLMGradientAttribution")
    row("patching every block × position", timed({"ours": lambda: fx.patch(family, prompt, response, donor=donor)}, args.repeats, device))
    row("layer lens, 2 models", timed({"ours": lambda: fx.layer_lens(family, prompt, response)}, args.repeats, device))
    return rows


def print_row(r: dict) -> None:
    def mib(x):
        return "n/a" if x != x else f"{x:.0f}"

    peer = "—" if r["peer"] != r["peer"] else f"{r['peer']:.3f}"
    speed = "—" if r["speedup"] != r["speedup"] else f"{r['speedup']:.2f}×"
    print(f"| {r['model']} | {r['dtype']} | {r['work']} | {r['ours']:.3f} | {r['peer_name']} | {peer} | {speed} | "
          f"{mib(r['ours_mib'])} | {mib(r['peer_mib'])} |", flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny models, one repeat: proves the script runs")
    parser.add_argument("--dtypes", default="bfloat16,float32")
    parser.add_argument("--out", default=None, help="folder for the built models (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device; run with --device cpu --smoke")
    args.n, args.new_tokens, args.repeats = (4, 4, 1) if args.smoke else (32, 32, 3)
    threads = torch.get_num_threads()
    if args.smoke and not args.device.startswith("cuda"):
        torch.set_num_threads(1)  # tiny models: one thread, for ours and the peers alike
    try:
        return run_all(args)
    finally:
        torch.set_num_threads(threads)


def run_all(args) -> list[dict]:
    """Every shape and dtype: build, check, print."""
    args.prompt_tokens, args.response_tokens = (6, 5) if args.smoke else (24, 32)
    shapes = SMOKE if args.smoke else SHAPES
    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(f"\nGPU check on {device_name}, torch {torch.__version__}\n")
    print("| model | dtype | work | ours (s) | peer | peer (s) | speed-up | peak MiB (ours) | peak MiB (peer) |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fx-gpu-check-", dir=args.out) as root:
        for name, shape in shapes.items():
            folder = build_family(Path(root), name, shape, args.device)
            for dtype in args.dtypes.split(","):
                rows += check_model(folder, name, dtype, args.device, args)
                gc.collect()  # the store of this dtype and its models go before the next
                if args.device.startswith("cuda"):
                    torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    main()
