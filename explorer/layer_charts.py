"""Chart builders for the Layers view: tidy DataFrames from `explorer.core.layers` in, altair out.

Every chart compares models with one shared scale: the lens's log-probs, the patching effects
(diverging, symmetric about 0 nats) and the weight changes each share one colour domain across
their panels, so a darker cell means a larger value in any panel.
"""

from __future__ import annotations

import pandas as pd

from explorer.charts import (
    CELL,
    FIT,
    MIN_CELL,
    _models,
    _position_labels,
    by_model,
    cell_for,
    readable,
)
from explorer.core.layers.patching import SMALL
from explorer.lazy import LazyModule

alt = LazyModule("altair")  # imported by the first chart, not by the app's start


def lens_heatmaps(lens: pd.DataFrame) -> alt.FacetChart:
    """Per model: block (rows, first at the top) × response token, the lens's log-prob of the
    token that follows; one colour scale for all models."""
    data = readable(lens.dropna(subset=["logprob"]))
    data["response token"], order = _position_labels(data, "position", "token")
    data = data[["model", "layer", "response token", "logprob", "top", "kl_to_base"]]
    low = float(min(data["logprob"].min(), -1e-3))
    cell = cell_for(len(order))
    chart = alt.Chart(data).mark_rect().encode(
        x=alt.X("response token:N", sort=order, axis=alt.Axis(labelAngle=-50, labelLimit=90)),
        y=alt.Y("layer:O", title="block"),
        color=alt.Color("logprob:Q", scale=alt.Scale(scheme="viridis", domain=[low, 0]), title="log p (lens)"),
        tooltip=["model:N", "layer:O", "response token:N", alt.Tooltip("logprob:Q", format=".3f"),
                 alt.Tooltip("top:N", title="lens's top token"), alt.Tooltip("kl_to_base:Q", format=".4f")],
    ).properties(width=alt.Step(cell), height=alt.Step(cell * 1.4))  # fmt: skip
    title = "Layer lens: log p of each response token read at each block (the last block is the model's own output)"
    return by_model(chart, data, cell * len(order) + 90).properties(title=title)


def kl_lines(lens: pd.DataFrame) -> alt.Chart:
    """Per descendant, the lens's KL from the base at each block (mean over response tokens)."""
    data = lens.dropna(subset=["kl_to_base"])
    data = data[data["model"] != data["model"].iloc[0]] if len(data) else data
    per = data.groupby(["model", "layer"], sort=False, as_index=False)["kl_to_base"].mean()
    models = _models(per) if len(per) else []
    return alt.Chart(per, title="Where each descendant parts from the base: KL of its lens from the base's, per block").mark_line(point=True).encode(
        x=alt.X("layer:O", title="block"),
        y=alt.Y("kl_to_base:Q", title="KL to base (nats, mean over tokens)"),
        color=alt.Color("model:N", sort=models),
        tooltip=["model:N", "layer:O", alt.Tooltip("kl_to_base:Q", format=".4f")],
    ).properties(width=min(FIT - 200, 420), height=180)  # fmt: skip


def patch_heatmaps(effects: pd.DataFrame, site: str = "block") -> alt.FacetChart:
    """Per donor: block × position of the text, the change in the response's log-prob (nats)
    when the base takes the donor's activation there; one symmetric scale for all donors."""
    data = readable(effects)
    data["text token"], order = _position_labels(data, "position", "token")
    data = data[["model", "layer", "text token", "effect", "recovered", "preview"]]
    limit = max(float(data["effect"].abs().max() or 0.0), 1e-6)
    cell = cell_for(len(order))
    chart = alt.Chart(data).mark_rect().encode(
        x=alt.X("text token:N", sort=order, axis=alt.Axis(labelAngle=-50, labelLimit=90)),
        y=alt.Y("layer:O", title="block"),
        color=alt.Color("effect:Q", scale=alt.Scale(scheme="redblue", domain=[-limit, limit], reverse=True),
                        title="Δ log p (nats)"),
        tooltip=["model:N", "layer:O", "text token:N", alt.Tooltip("effect:Q", format="+.3f"),
                 alt.Tooltip("recovered:Q", format=".0%", title="share of the log-ratio"),
                 alt.Tooltip("preview:Q", format=".0%", title="attribution-patching estimate")],
    ).properties(width=alt.Step(cell), height=alt.Step(cell * 1.4))  # fmt: skip
    title = f"Patching into the base: Δ log p of the response when one {site} output takes the descendant's activation"
    return by_model(chart, data, cell * len(order) + 90).properties(title=title)


def weight_heatmap(weights: pd.DataFrame) -> alt.FacetChart:
    """Per descendant: module (rows) × block, the relative change of the weights; one scale."""
    data = weights.copy()
    data["part"] = data["module"].str.replace(".weight", "", regex=False)
    order = list(dict.fromkeys(data.sort_values("layer")["block"]))
    data = data[["model", "block", "part", "relative_change", "kind"]]
    top = max(float(data["relative_change"].max() or 0.0), 1e-9)
    chart = alt.Chart(data).mark_rect(stroke="#e5e7eb", strokeWidth=0.5).encode(
        x=alt.X("block:N", sort=order, title="block"),
        y=alt.Y("part:N", title=None, sort=sorted(set(data["part"]))),
        color=alt.Color("relative_change:Q", scale=alt.Scale(domain=[0, top], range=["#ffffff", "#c2410c"], interpolate="rgb"),
                        title="‖ΔW‖ / ‖W‖ (white: unchanged)"),
        tooltip=["model:N", "block:N", "part:N", "kind:N", alt.Tooltip("relative_change:Q", format=".4f")],
    ).properties(width=alt.Step(CELL * 1.5), height=alt.Step(MIN_CELL))  # fmt: skip
    title = "Where the weights moved: relative change per module and block"
    return by_model(chart, data, CELL * 1.5 * len(order) + 170).properties(title=title)



def carried_lines(layers: pd.DataFrame, site: str = "block") -> alt.LayerChart:
    """Per donor, the share of its change that each block's output carries when patched into
    the base at every position: the cumulative curve whose first crossings of 50% and 90% say
    where the change enters (the last block's 100% is any shared head's, not a finding)."""
    data = layers.dropna(subset=["recovered"])
    if "log_ratio" in data:  # shares of a change of a few tenths of a nat swing widely: not drawn
        data = data[data["log_ratio"].abs() >= SMALL]
    data = data[["model", "layer", "recovered", "effect"]]
    models = _models(data) if len(data) else []
    lines = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("layer:O", title=site),
        y=alt.Y("recovered:Q", title="share of the change carried", axis=alt.Axis(format="%")),
        color=alt.Color("model:N", sort=models, title="descendant"),
        tooltip=["model:N", alt.Tooltip("layer:O", title=site), alt.Tooltip("recovered:Q", format=".0%"),
                 alt.Tooltip("effect:Q", format="+.2f", title="Δ log p (nats)")],
    )  # fmt: skip
    marks = pd.DataFrame({"share": [0.5, 0.9], "what": ["half", "90%"]})
    rules = alt.Chart(marks).mark_rule(strokeDash=[4, 3], color="#9ca3af").encode(y="share:Q", tooltip=["what:N"])
    title = f"Where each change enters: the share each {site}'s output carries into the base (dashed: 50% and 90%; changes under {SMALL} nats left out)"
    return alt.layer(rules, lines, title=title).properties(width=min(FIT - 200, 420), height=180)


def diff_tokens(tokens: pd.DataFrame, layer: int, k: int = 6) -> alt.FacetChart:
    """Per descendant: what its activation difference at `layer` reads as through its own head —
    the top `k` raised and lowered tokens, for the mean over positions and each position."""
    data = readable(tokens[(tokens["layer"] == layer) & (tokens["rank"] < k)])
    data = data.assign(rank=data["rank"] + 1,
                       where=data["position"].map(lambda p: "mean" if p < 0 else f"token {p + 1}"),
                       strength=data.groupby(["model", "position", "direction"])["logit"].transform(lambda v: v / v.abs().max()))  # fmt: skip
    rows = ["mean", *sorted({w for w in data["where"] if w != "mean"})]
    base = alt.Chart().encode(
        x=alt.X("rank:O", title="rank"), y=alt.Y("where:N", sort=rows, title=None),
        tooltip=["model:N", "direction:N", "where:N", "rank:O", "token:N", alt.Tooltip("logit:Q", format="+.2f")],
    )  # fmt: skip
    shade = alt.Scale(scheme="redblue", domain=[-1.8, 1.8], reverse=True)  # pale enough to read the words on
    cells = base.mark_rect().encode(color=alt.Color("strength:Q", scale=shade, legend=None))
    words = base.mark_text(fontSize=10, limit=60).encode(text="token:N")
    panel = alt.layer(cells, words, data=data).properties(width=k * 62, height=alt.Step(16))
    title = f"What each adaptation adds at block {layer}, read through its own head (raised: red, lowered: blue)"
    return panel.facet(row=alt.Row("model:N", sort=_models(data), title=None, header=alt.Header(labelFontWeight="bold")),
                       column=alt.Column("direction:N", sort=["raised", "lowered"], title=None)).properties(title=title)  # fmt: skip


def spectra_heatmap(spectra: pd.DataFrame) -> alt.FacetChart:
    """Per descendant: module (rows) × block, the effective rank of its weight change (a LoRA's
    is at most its rank; a full fine-tune spreads over many directions), with the stable rank,
    the top singular values and the intruder dimensions in the tooltip."""
    data = spectra.copy()
    data["part"] = data["module"].str.replace(".weight", "", regex=False)
    data["top σ"] = data["sigma"].map(lambda s: ", ".join(f"{v:.3g}" for v in list(s)[:4]))
    order = list(dict.fromkeys(data.sort_values("layer")["block"]))
    data = data[["model", "block", "part", "kind", "effective_rank", "stable_rank", "intruders", "rank_bound", "top σ"]]
    chart = alt.Chart(data).mark_rect(stroke="#e5e7eb", strokeWidth=0.5).encode(
        x=alt.X("block:N", sort=order, title="block"),
        y=alt.Y("part:N", title=None, sort=sorted(set(data["part"]))),
        color=alt.Color("effective_rank:Q", scale=alt.Scale(type="log", scheme="purples"), title="effective rank of ΔW"),
        tooltip=["model:N", "block:N", "part:N", "kind:N", alt.Tooltip("effective_rank:Q", format=".1f"),
                 alt.Tooltip("stable_rank:Q", format=".2f"), "rank_bound:Q", "top σ:N",
                 alt.Tooltip("intruders:Q", title="intruder dimensions (of 10)")],
    ).properties(width=alt.Step(CELL * 1.5), height=alt.Step(MIN_CELL))  # fmt: skip
    title = "The shape of each change: effective rank of ΔW per module and block (tooltip: singular values, intruders)"
    return by_model(chart, data, CELL * 1.5 * len(order) + 170).properties(title=title)
