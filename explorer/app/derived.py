"""What the controller derives from results for the views to lay out: status sentences, the
chosen response token by token, the attribution views, the method table."""

from __future__ import annotations

from typing import Any

from explorer.app.state import AppState

# Every result of a run, emptied (a new family, a new run)
CLEARED = {"samples": None, "clusters": None, "variability": None, "provenance": None,
           "cluster_counts": None, "first_tokens": None, "entropy": None, "cross": None,
           "log_ratio": None, "findings": None, "focus": None, "focus_responses": None, "chosen": None, "chosen_tokens": None, "attribution": None,
           "attribution_diff": None, "attribution_note": "", "attribution_spread": None, "faithfulness": None, "agreement": None,
           "inside": None, "downloads": []}  # fmt: skip


def summary(samples) -> str:
    seconds = sum(samples.meta.get("seconds", {}).values())
    threads = sorted(set(samples.meta.get("threads", {}).values()))
    used = f", {'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''}" if threads else ""
    return f"{len(samples.df)} samples from {len(samples.models)} models in {seconds:.1f} s (seed {samples.params.seed}{used})"


def spread_method(method: str) -> str:
    """Integrated gradients over every sample is costly; its cheap additive cousin stands in."""
    return "grad_x_input" if method == "integrated_gradients" else method


def chosen_tokens(state: AppState, model: str, sample: int) -> dict[str, Any]:
    """The chosen response token by token: its log-ratios against the base (when the family
    shares a tokenizer) and the model's probability of each token."""
    from explorer.core.tables import token_probabilities

    ratio = None
    if state.log_ratio is not None:
        lr = state.log_ratio
        ratio = lr[(lr["model"] == model) & (lr["sample"] == sample)]
    return {"log_ratio": ratio, "prob": token_probabilities(state.samples, model, sample)}


def attribution_views(attr) -> dict[str, Any]:
    """The attribution, its difference from the base, a sentence on what it shows, and the
    faithfulness of every method measured on this response (None before the first)."""
    import pandas as pd

    diff = attr.diff()
    diff = diff[diff["model"] != attr.models[0]]
    rows = attr.meta.get("faithfulness") or []
    return {"attribution": attr, "attribution_diff": diff if len(diff) else None,
            "attribution_note": attr.summary(), "faithfulness": pd.DataFrame(rows) if rows else None}  # fmt: skip


def agreement_views(spread, method: str) -> dict[str, Any]:
    """How far each descendant's attributions over its own answers are from the base's beyond
    the method's noise: rank correlations with intervals, or (relative methods, exactly 0 in the
    base) the prompt tokens whose change has an interval that excludes 0."""
    from explorer.core.attribution.agreement import agreement, changes
    from explorer.core.attribution.methods import get_method
    from explorer.core.attribution.targets import get_target

    if spread is None or not len(spread):
        return {"agreement": None}
    relative = get_target(get_method(method).target).relative
    return {"agreement": changes(spread) if relative else agreement(spread)}


def method_table() -> list[tuple[str, bool]]:
    """(method, needs weights) for every registered method, read afresh: methods registered
    after the app was made appear too."""
    from explorer.core.attribution import list_methods

    return [(row.method, row.needs != "forward") for row in list_methods().itertuples()]


def needs_weights(method: str) -> bool:
    """Whether an attribution method needs local weights (gradients or attention)."""
    return dict(method_table()).get(method, False)


def left_out(provenance: Any) -> dict[str, str]:
    """The banner's sentence for behaviours left out of the provenance table (a pattern that
    ran out of its matching time): {"error": …}, or nothing when every behaviour counted."""
    skipped = getattr(provenance, "attrs", {}).get("skipped") or {}
    return {"error": " ".join(skipped.values())} if skipped else {}
