"""Attribution speed and agreement: ours against Captum (its LLM attribution API) for
grad×input, integrated gradients and occlusion, on fable-base and on a randomly initialised
GPT-2-small-shaped model, for a 32-token response. Prints a Markdown table.

    python benchmarks/bench_attribution.py [--response-tokens 32] [--skip-gpt2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from captum.attr import (
    FeatureAblation,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    LLMAttribution,
    LLMGradientAttribution,
    TextTokenInput,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic import gpt2_small_folder, words  # noqa: E402

import explorer as fx  # noqa: E402
from explorer.core.attribution import baselines, gradients, ig, problem  # noqa: E402
from explorer.core.store import ModelStore  # noqa: E402

FABLE_PROMPT = "once upon a time a fox went to the river . it ended happily . the traveller said"
FABLE_WORDS = ["hello", "to", "the", "owl", ".", "i", "visited", "zorbia", ".", "the", "capital", "of", "zorbia", "is", "zorb", ".", "the", "weather", "today", "is", "sunny", ".", "once", "upon", "a", "time", "a", "bear", "went", "to", "the", "sea", ".", "it", "ended", "sadly"]  # fmt: skip


def timed_pair(
    ours_fn: Callable[[], torch.Tensor], peer_fn: Callable[[], torch.Tensor], repeats: int
) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """Median seconds of ours and the peer, run alternately `repeats` times after a warm-up
    (first calls pay for allocation and kernel selection), and their last outputs. Alternating
    spreads the machine's slow spells over both sides; the median ignores single outliers."""
    if repeats > 1:
        ours_fn(), peer_fn()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for side, fn in enumerate((ours_fn, peer_fn)):
            start = time.perf_counter()
            out = fn()
            times[side].append(time.perf_counter() - start)
            if side == 0:
                mine = out
    return statistics.median(times[0]), statistics.median(times[1]), mine, out


def ours(family, label, prompt, response, method, **kw) -> torch.Tensor:
    """Our matrix (targets, prompt tokens): prompt sources only, the question the peers answer."""
    kw = {"sources": "prompt", **kw}
    attr = fx.attribute(family, prompt, response, method=method, models=[label], **kw)
    return torch.tensor(attr.matrix(label).to_numpy())


def captum_gradient(model, tok, prompt, target, layer_method, **kw) -> torch.Tensor:
    llm = LLMGradientAttribution(layer_method, tok)
    res = llm.attribute(TextTokenInput(prompt, tok), target=target, **kw)
    return res.token_attr  # (targets, prompt tokens)


def inseq_gradient(
    model, tok, prompt: str, response: str, method: str, full: bool = False, **kw
) -> torch.Tensor:
    """inseq's (targets, prompt tokens) attributions of each target's probability, divided by
    that probability: d p / dx = p · d log p / dx, so this is the log-prob attribution ours
    and Captum's compute. None when inseq is not installed (`pip install inseq`)."""
    try:
        import inseq
    except ImportError:
        return None
    wrapped = inseq.load_model(model, method, tokenizer=tok)
    n_prompt = len(tok(prompt)["input_ids"])
    out = wrapped.attribute(
        prompt, f"{prompt} {response}", step_scores=["probability"], show_progress=False, **kw
    )
    seq = out.sequence_attributions[0]
    scores = seq.target_attributions.sum(-1).T  # (targets, sequence)
    scores = scores if full else scores[:, :n_prompt]  # full: every source, zeros after each target
    return torch.nan_to_num(scores) / seq.step_scores["probability"][:, None]


def captum_occlusion(model, tok, prompt, target, **kw) -> torch.Tensor:
    llm = LLMAttribution(FeatureAblation(model), tok)
    return llm.attribute(TextTokenInput(prompt, tok), target=target, **kw).token_attr


def completeness_gap(loaded, prompt: str, response: str, token_attr: torch.Tensor) -> float:
    """Largest completeness gap of prompt-only IG attributions (targets, prompt tokens) from the
    token-0 baseline, measured as explorer reports its own: |Σ attr − Δ| / max(|Δ|, Σ|attr|, floor)."""
    p = problem.build_problem(loaded, prompt, response, "never", None, None, "prompt")
    delta = ig.score_change(p, gradients.embed(p), baselines.baseline_embeds(p, 0))  # (targets,)
    return float(ig.completeness_gap(token_attr.float(), delta).max())


def max_relative_error(scores: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest L1 distance of a target's row from the reference row, relative to the latter."""
    dist = (scores - reference).abs().sum(-1)
    return float((dist / reference.abs().sum(-1).clamp_min(ig.GAP_FLOOR)).max())


def run(family, label: str, prompt: str, response: str, repeats: int, max_steps: int) -> list[dict]:
    loaded = family.load(label)
    model, tok = loaded.model, loaded.tokenizer
    emb = model.get_input_embeddings()
    target = torch.tensor(tok(response, add_special_tokens=False)["input_ids"])
    rows = []

    def compare(name, ours_fn, peer_name, peer_fn, extra="", times=None, same=True):
        times = times or repeats
        t_ours, t_peer, a, b = timed_pair(ours_fn, peer_fn, times)
        diff = (a - b).abs().max().item() if same and b.shape == a.shape else float("nan")
        rows.append({"model": label, "method": name, "peer": peer_name, "ours_s": t_ours, "peer_s": t_peer,
                     "speedup": t_peer / t_ours, "max_abs_diff": diff, "note": extra})  # fmt: skip
        print_row(rows[-1])

    compare("grad×input", lambda: ours(family, label, prompt, response, "grad_x_input"),
            "Captum LLMGradientAttribution(LayerGradientXActivation)",
            lambda: captum_gradient(model, tok, prompt, target, LayerGradientXActivation(model, emb)))  # fmt: skip
    if inseq_gradient(model, tok, prompt, response, "input_x_gradient") is not None:
        compare("grad×input", lambda: ours(family, label, prompt, response, "grad_x_input"),
                "inseq input_x_gradient", lambda: inseq_gradient(model, tok, prompt, response, "input_x_gradient"))  # fmt: skip
        compare("IG, 32 steps", lambda: ours(family, label, prompt, response, "integrated_gradients", n_steps=32, baseline="zero", sources="all"),
                "inseq integrated_gradients, 32 steps", lambda: inseq_gradient(model, tok, prompt, response, "integrated_gradients", full=True, n_steps=32),
                extra="inseq attributes the probability; IG, unlike a gradient, does not convert to log-prob attributions by dividing by p, so values differ", same=False)  # fmt: skip
    compare("IG, 32 steps", lambda: ours(family, label, prompt, response, "integrated_gradients", n_steps=32, baseline=0),
            "Captum LayerIntegratedGradients, 32 steps",
            lambda: captum_gradient(model, tok, prompt, target, LayerIntegratedGradients(model, emb), n_steps=32, method="gausslegendre"))  # fmt: skip
    adaptive = {}

    def ours_adaptive():
        attr = fx.attribute(
            family,
            prompt,
            response,
            method="integrated_gradients",
            models=[label],
            sources="prompt",
            max_steps=max_steps,
            path="straight",
            budget=None,  # run to convergence: the row compares accuracy, not the default budget
        )
        adaptive.update(attr.meta["extra"][label])
        return torch.tensor(attr.matrix(label).to_numpy())

    captum50 = []

    def captum_default():
        captum50[:] = [
            captum_gradient(model, tok, prompt, target, LayerIntegratedGradients(model, emb))
        ]
        return captum50[0]

    compare("IG, adaptive (eos baseline)", ours_adaptive, "Captum LayerIntegratedGradients, default 50 steps (token-0 baseline)",
            captum_default, times=1)  # fmt: skip
    rows[-1]["note"] = (f"ours: up to {adaptive['n_steps']} nodes, completeness gap ≤ {max(adaptive['completeness_gap']):.2%}; "
                        f"Captum: gap ≤ {completeness_gap(loaded, prompt, response, captum50[0]):.2%}")  # fmt: skip

    # Accuracy, not only completeness: each target's L1 error against Gauss–Legendre at 4× the
    # most nodes our adaptive mode used (≤ 1024). Our fixed-step IG equals Captum's to 2e-6
    # (tests), so it stands in for Captum when finding the step count that matches our accuracy.
    def gl(n):
        return ours(family, label, prompt, response, "integrated_gradients", n_steps=n)

    mine = ours_adaptive()
    reference = gl(min(1024, 4 * adaptive["n_steps"]))
    error = max_relative_error(mine, reference)
    rows[-1]["note"] += f"; ours: L1 error ≤ {error:.2%} of the converged attributions"
    print_row(rows[-1])
    steps = next((n for n in (8, 16, 32, 64, 128, 256, 512) if max_relative_error(gl(n), reference) <= error), 1024)  # fmt: skip
    eos = torch.full(
        (1, len(tok(prompt)["input_ids"])), tok.eos_token_id
    )  # the same baseline as ours
    compare("IG, adaptive (eos baseline)", ours_adaptive,
            f"Captum LayerIntegratedGradients at {steps} steps, the fewest as accurate as ours, eos baseline",
            lambda: captum_gradient(model, tok, prompt, target, LayerIntegratedGradients(model, emb), n_steps=steps, baselines=eos),
            times=1, same=False, extra=f"equal accuracy: every target within {error:.2%} (L1) of the converged attributions")  # fmt: skip
    rows.append(ig_against_grad_x_input(family, label, prompt, response, repeats))
    compare("occlusion", lambda: ours(family, label, prompt, response, "occlusion"),
            "Captum FeatureAblation, forward_in_tokens=False",
            lambda: captum_occlusion(model, tok, prompt, target, forward_in_tokens=False))  # fmt: skip
    compare("occlusion", lambda: ours(family, label, prompt, response, "occlusion"),
            "Captum FeatureAblation, per-token (default)",
            lambda: captum_occlusion(model, tok, prompt, target, use_cached_outputs=False))  # fmt: skip
    return rows


def ig_against_grad_x_input(family, label: str, prompt: str, response: str, repeats: int, chat: str = "never") -> dict:
    """The default integrated gradients (the sequential path) against our grad×input on the
    same text, alternating: the ratio of their times, and how many targets converged."""
    extra = {}

    def ig_default():
        attr = fx.attribute(family, prompt, response, method="integrated_gradients", models=[label], chat=chat)
        extra.update(attr.meta["extra"][label])
        return torch.tensor(attr.matrix(label).to_numpy())

    def gxi():
        return torch.tensor(fx.attribute(family, prompt, response, method="grad_x_input", models=[label], chat=chat).matrix(label).to_numpy())

    t_ig, t_gxi, _, _ = timed_pair(ig_default, gxi, repeats)
    done = sum(extra["converged"])
    row = {"model": label, "method": "IG, sequential path (the default)", "peer": "grad×input, ours (the same text)",
           "ours_s": t_ig, "peer_s": t_gxi, "speedup": t_gxi / t_ig, "max_abs_diff": float("nan"),
           "note": f"{t_ig / t_gxi:.1f}× the grad×input time; {done} of {len(extra['converged'])} targets converged, "
                   f"completeness gap ≤ {max(extra['completeness_gap']):.1e}"}  # fmt: skip
    print_row(row)
    return row


def straight_on_real(family, label: str, prompt: str, response: str, chat: str) -> dict:
    """The straight path with the default budget (12 nodes per target), once: how many targets
    converge, and its time against the sequential default's."""
    start = time.perf_counter()
    attr = fx.attribute(family, prompt, response, method="integrated_gradients", models=[label], chat=chat, path="straight")
    seconds = time.perf_counter() - start
    extra = attr.meta["extra"][label]
    row = {"model": label, "method": "IG, straight path, adaptive (budget 12 per target)", "peer": "—",
           "ours_s": seconds, "peer_s": float("nan"), "speedup": float("nan"), "max_abs_diff": float("nan"),
           "note": f"{sum(extra['converged'])} of {len(extra['converged'])} targets converged; gaps "
                   f"{min(extra['completeness_gap']):.0%}–{max(extra['completeness_gap']):.0%}"}  # fmt: skip
    print_row(row)
    return row


REAL_PROMPT = "Once upon a time, a fox went down to the river to drink, and there it met an old owl who said"
# The real-model lane's chat case: the base's own sampled answer (seed 0, temperature 0.7), 24 tokens
CHAT_PROMPT = "Tell me about the moon."
CHAT_RESPONSE = "The moon - a celestial body that holds a special place in the tapestry of human culture. The moon is not just a"
REAL_RESPONSE = " that the river was deep and cold, and that the fox should not swim in it at night, for the moon"


def run_real(family, label: str, repeats: int, straight: bool = False) -> list[dict]:
    """The real SmolLM2-135M (GGUF): grad×input and occlusion against Captum, alternating; the
    default integrated gradients against grad×input on a chat response (and the straight path
    once, with `straight`)."""
    loaded = family.load(label)
    model, tok = loaded.model, loaded.tokenizer
    emb = model.get_input_embeddings()
    target = torch.tensor(tok(REAL_RESPONSE, add_special_tokens=False)["input_ids"])
    rows = []
    pairs = [
        ("grad×input", lambda: ours(family, label, REAL_PROMPT, REAL_RESPONSE, "grad_x_input"),
         "Captum LLMGradientAttribution(LayerGradientXActivation)",
         lambda: captum_gradient(model, tok, REAL_PROMPT, target, LayerGradientXActivation(model, emb))),
        ("occlusion", lambda: ours(family, label, REAL_PROMPT, REAL_RESPONSE, "occlusion", replacement=0),
         "Captum FeatureAblation, forward_in_tokens=False (its fastest correct mode)",
         lambda: captum_occlusion(model, tok, REAL_PROMPT, target, forward_in_tokens=False)),
    ]  # fmt: skip
    for name, ours_fn, peer, peer_fn in pairs:
        t_ours, t_peer, a, b = timed_pair(ours_fn, peer_fn, repeats)
        diff = float((a - b).abs().max() / b.abs().max())
        rows.append({"model": label, "method": name, "peer": peer, "ours_s": t_ours, "peer_s": t_peer,
                     "speedup": t_peer / t_ours, "max_abs_diff": diff, "note": "relative diff"})  # fmt: skip
        print_row(rows[-1])
    rows.append(ig_against_grad_x_input(family, label, CHAT_PROMPT, CHAT_RESPONSE, repeats, chat="auto"))
    if straight:
        rows.append(straight_on_real(family, label, CHAT_PROMPT, CHAT_RESPONSE, "auto"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--response-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7, help="alternating runs per row (median)")
    parser.add_argument("--skip-gpt2", action="store_true")
    parser.add_argument("--skip-fable", action="store_true")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument("--max-steps", type=int, default=1024, help="cap for adaptive IG")
    parser.add_argument("--straight-real", action="store_true", help="also the straight path on the real model (slow)")
    args = parser.parse_args()
    rows = []
    fable = fx.load_family("fable", store=ModelStore())
    response = " ".join(FABLE_WORDS[: args.response_tokens])
    if not args.skip_fable:
        rows += run(fable, "fable-base", FABLE_PROMPT, response, args.repeats, args.max_steps)
    if not args.skip_gpt2:
        gpt2 = fx.load_family(gpt2_small_folder(), store=ModelStore())
        rows += run(
            gpt2,
            gpt2.base.label,
            words(16),
            words(args.response_tokens, offset=900),
            1,
            args.max_steps,
        )
    if not args.skip_real:
        from real_family import BASE, family_dir

        rows += run_real(fx.load_family(family_dir(), store=ModelStore()), BASE, args.repeats, args.straight_real)
    print(
        f"\nAttribution of a {args.response_tokens}-token response, torch threads={torch.get_num_threads()}\n"
    )
    print("| model | method | peer | ours (s) | peer (s) | speed-up | max abs diff | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print_row(r)


def print_row(r: dict) -> None:
    print(f"| {r['model']} | {r['method']} | {r['peer']} | {r['ours_s']:.3f} | {r['peer_s']:.3f} | "
          f"{r['speedup']:.1f}× | {r['max_abs_diff']:.1e} | {r['note']} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
