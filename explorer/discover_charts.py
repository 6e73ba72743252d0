"""Chart builders for Discover: tidy DataFrames in, altair charts out (nothing is displayed).

One panel per descendant in family order; one scale for all panels, so a descendant that
departs little looks small next to one that departs a lot.
"""

from __future__ import annotations

import pandas as pd

from explorer.charts import LABEL_STYLE, by_model
from explorer.lazy import LazyModule

alt = LazyModule("altair")  # imported by the first chart, not by the app's start

PANEL = 380  # a descendant's panel (two fit side by side at 1024 px)
PROMPT_CHARS = 44  # prompt labels are cut to this many characters (the tooltip has them whole)


def short(text: str, limit: int = PROMPT_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def divergence_bars(df: pd.DataFrame, top: int = 8) -> alt.FacetChart:
    """Per descendant, the `top` prompts where it departs most from the base: mean per-token
    KL(descendant ‖ base) along its own samples (bar) and along the base's (tick)."""
    shown = df[df["rank"] <= top].assign(label=lambda d: d["prompt"].map(short))
    tooltip = ["prompt:N", alt.Tooltip("kl_mean:Q", format=".3f", title="KL along its samples (nats/token)"),
               alt.Tooltip("kl_mean_on_base:Q", format=".3f", title="KL along the base's samples"),
               alt.Tooltip("kl_max:Q", format=".2f", title="largest KL at one token"),
               alt.Tooltip("log_ratio:Q", format=".2f", title="log-likelihood ratio per response (nats)"), "category:N"]  # fmt: skip
    y = alt.Y("label:N", sort=alt.EncodingSortField("kl_mean", order="descending"), title=None,
              axis=alt.Axis(labelLimit=300))  # fmt: skip
    bars = alt.Chart().mark_bar(color="#2563eb").encode(
        x=alt.X("kl_mean:Q", title="KL(descendant ‖ base), nats per token"), y=y, tooltip=tooltip)
    ticks = alt.Chart().mark_tick(color="#111827", thickness=2).encode(x="kl_mean_on_base:Q", y=y, tooltip=tooltip)
    layered = alt.layer(bars, ticks, data=shown).properties(width=PANEL - 200, height=alt.Step(16))
    return by_model(layered, shown, PANEL).resolve_scale(y="independent").properties(
        title="Where each descendant departs most (bar: along its samples; tick: along the base's)")


def notable(words: pd.DataFrame, top: int = 8, share: float = 0.1, least: float = 0.02) -> pd.DataFrame:
    """Each descendant's `top` words per direction that moved at least `least` occurrences per
    response and at least `share` of its largest move in that direction (the rest is noise)."""
    best = words.groupby(["model", "direction"])["score"].transform("max")
    return words[(words["word_rank"] <= top) & (words["score"] >= least) & (words["score"] >= share * best)]


def word_bars(words: pd.DataFrame, top: int = 8) -> alt.FacetChart:
    """Per descendant, the words its adaptation raised (right) and lowered (left), by the
    expected extra occurrences per response (the notable ones: see `notable`)."""
    shown = notable(words, top).copy()
    shown["value"] = shown["score"].where(shown["direction"] == "raised", -shown["score"])
    tooltip = ["word:N", "token:N", "direction:N",
               alt.Tooltip("score:Q", format=".3f", title="extra occurrences per response"),
               alt.Tooltip("top_k_share:Q", format=".1%", title="top-K share (diffing-toolkit)"),
               alt.Tooltip("p_desc:Q", format=".4f", title="mean p, descendant"),
               alt.Tooltip("p_base:Q", format=".4f", title="mean p, base"), alt.Tooltip("prompts:Q", title="prompts")]  # fmt: skip
    colour = alt.Color("direction:N", scale=alt.Scale(domain=["raised", "lowered"],
                       range=[LABEL_STYLE["amplified"], LABEL_STYLE["suppressed"]]), legend=alt.Legend(title=None))  # fmt: skip
    chart = alt.Chart().mark_bar().encode(
        x=alt.X("value:Q", title="← lowered · raised →  (occurrences per response)"),
        y=alt.Y("word:N", sort=alt.EncodingSortField("value", order="descending"), title=None),
        color=colour, tooltip=tooltip,
    ).properties(width=PANEL - 140, height=alt.Step(16))  # fmt: skip
    layered = alt.layer(chart, data=shown)
    return by_model(layered, shown, PANEL).resolve_scale(y="independent").properties(
        title="Words each adaptation raised or lowered, over the prompt set")
