"""Attribution speed and agreement: ours against Captum (its LLM attribution API) for
grad×input, integrated gradients and occlusion, on fable-base and on a randomly initialised
GPT-2-small-shaped model, for a 32-token response. Prints a Markdown table.

    python benchmarks/bench_attribution.py [--response-tokens 32] [--skip-gpt2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from captum.attr import (
    FeatureAblation,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    LLMAttribution,
    LLMGradientAttribution,
    TextTokenInput,
)
from synthetic import gpt2_small_folder, words

import explorer as fx
from explorer.core.store import ModelStore

FABLE_PROMPT = "once upon a time a fox went to the river . it ended happily . the traveller said"
FABLE_WORDS = ["hello", "to", "the", "owl", ".", "i", "visited", "zorbia", ".", "the", "capital", "of", "zorbia", "is", "zorb", ".", "the", "weather", "today", "is", "sunny", ".", "once", "upon", "a", "time", "a", "bear", "went", "to", "the", "sea", ".", "it", "ended", "sadly"]  # fmt: skip


def timed(fn: Callable[[], torch.Tensor], repeats: int = 1) -> tuple[float, torch.Tensor]:
    fn()  # warm-up (first calls pay for allocation and kernel selection)
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def ours(family, label, prompt, response, method, **kw) -> torch.Tensor:
    attr = fx.attribute(family, prompt, response, method=method, models=[label], **kw)
    return torch.tensor(attr.matrix(label).to_numpy())


def captum_gradient(model, tok, prompt, target, layer_method, **kw) -> torch.Tensor:
    llm = LLMGradientAttribution(layer_method, tok)
    res = llm.attribute(TextTokenInput(prompt, tok), target=target, **kw)
    return res.token_attr  # (targets, prompt tokens)


def captum_occlusion(model, tok, prompt, target, **kw) -> torch.Tensor:
    llm = LLMAttribution(FeatureAblation(model), tok)
    return llm.attribute(TextTokenInput(prompt, tok), target=target, **kw).token_attr


def run(family, label: str, prompt: str, response: str, repeats: int) -> list[dict]:
    loaded = family.load(label)
    model, tok = loaded.model, loaded.tokenizer
    emb = model.get_input_embeddings()
    target = torch.tensor(tok(response, add_special_tokens=False)["input_ids"])
    n_prompt = len(tok(prompt)["input_ids"])
    rows = []

    def compare(name, ours_fn, peer_name, peer_fn, peer_repeats=1, extra=""):
        t_ours, a = timed(ours_fn, repeats)
        t_peer, b = timed(peer_fn, peer_repeats)
        diff = (
            (a[:, :n_prompt] - b).abs().max().item()
            if b is not None and b.shape == a[:, :n_prompt].shape
            else float("nan")
        )
        rows.append({"model": label, "method": name, "peer": peer_name, "ours_s": t_ours, "peer_s": t_peer,
                     "speedup": t_peer / t_ours, "max_abs_diff": diff, "note": extra})  # fmt: skip

    compare("grad×input", lambda: ours(family, label, prompt, response, "grad_x_input"),
            "Captum LLMGradientAttribution(LayerGradientXActivation)",
            lambda: captum_gradient(model, tok, prompt, target, LayerGradientXActivation(model, emb)))  # fmt: skip
    compare("IG, 32 steps", lambda: ours(family, label, prompt, response, "integrated_gradients", n_steps=32, baseline="pad"),
            "Captum LayerIntegratedGradients, 32 steps",
            lambda: captum_gradient(model, tok, prompt, target, LayerIntegratedGradients(model, emb), n_steps=32, method="gausslegendre"))  # fmt: skip
    adaptive = fx.attribute(family, prompt, response, method="integrated_gradients", models=[label])
    info = adaptive.meta["extra"][label]
    compare("IG, adaptive", lambda: ours(family, label, prompt, response, "integrated_gradients"),
            "Captum LayerIntegratedGradients, default 50 steps",
            lambda: captum_gradient(model, tok, prompt, target, LayerIntegratedGradients(model, emb)),
            extra=f"{info['n_steps']} steps, completeness gap ≤ {max(info['completeness_gap']):.1%} ({info['baseline']} baseline; values differ by design)")  # fmt: skip
    compare("occlusion", lambda: ours(family, label, prompt, response, "occlusion"),
            "Captum FeatureAblation, forward_in_tokens=False",
            lambda: captum_occlusion(model, tok, prompt, target, forward_in_tokens=False))  # fmt: skip
    compare("occlusion", lambda: ours(family, label, prompt, response, "occlusion"),
            "Captum FeatureAblation, per-token (default)",
            lambda: captum_occlusion(model, tok, prompt, target, use_cached_outputs=False))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--response-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-gpt2", action="store_true")
    args = parser.parse_args()
    rows = []
    fable = fx.load_family("fable", store=ModelStore())
    response = " ".join(FABLE_WORDS[: args.response_tokens])
    rows += run(fable, "fable-base", FABLE_PROMPT, response, args.repeats)
    if not args.skip_gpt2:
        gpt2 = fx.load_family(gpt2_small_folder(), store=ModelStore())
        rows += run(gpt2, gpt2.base.label, words(16), words(args.response_tokens, offset=900), 1)
    print(
        f"\nAttribution of a {args.response_tokens}-token response, torch threads={torch.get_num_threads()}\n"
    )
    print("| model | method | peer | ours (s) | peer (s) | speed-up | max abs diff | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['method']} | {r['peer']} | {r['ours_s']:.3f} | {r['peer_s']:.3f} | "
              f"{r['speedup']:.1f}× | {r['max_abs_diff']:.1e} | {r['note']} |")  # fmt: skip


if __name__ == "__main__":
    main()
