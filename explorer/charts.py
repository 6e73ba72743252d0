"""Chart builders: tidy DataFrame in, altair chart out. Nothing here displays anything.

Models are always placed side by side (a column per model, or a model axis) in family order, and
charts that compare models share one colour scale.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

LABELS = ["base", "inherited", "introduced", "amplified", "suppressed", "absent", "inconclusive"]
LABEL_COLOURS = ["#6b7280", "#2563eb", "#dc2626", "#f59e0b", "#7c3aed", "#d1d5db", "#9ca3af"]
PANEL = 170  # width of one model's panel, in pixels


def _models(df: pd.DataFrame, column: str = "model") -> list[str]:
    return list(dict.fromkeys(df[column]))


def _column(df: pd.DataFrame, title: str | None = None) -> alt.Column:
    return alt.Column(
        "model:N", sort=_models(df), title=title, header=alt.Header(labelFontWeight="bold")
    )


def clusters_chart(counts: pd.DataFrame, top: int = 8) -> alt.Chart:
    """Responses by answer cluster: one stacked bar per model (the `top` clusters, rest grouped)."""
    df = counts.copy()
    keep = set(df.sort_values("cluster_rank")["cluster"].drop_duplicates().head(top))
    df["cluster"] = df["cluster"].where(df["cluster"].isin(keep), "(other)")
    df = df.groupby(["model", "cluster"], sort=False, as_index=False)[["count", "share"]].sum()
    order = [
        c for c in counts.sort_values("cluster_rank")["cluster"].drop_duplicates() if c in keep
    ]
    return (
        alt.Chart(df, title="Answers by cluster")
        .mark_bar()
        .encode(
            x=alt.X("model:N", sort=_models(df), title=None, axis=alt.Axis(labelAngle=-30)),
            y=alt.Y(
                "share:Q",
                title="share of samples",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "cluster:N",
                sort=[*order, "(other)"],
                title="answer",
                legend=alt.Legend(labelLimit=220),
            ),
            order=alt.Order("share:Q", sort="descending"),
            tooltip=["model:N", "cluster:N", "count:Q", alt.Tooltip("share:Q", format=".0%")],
        )
        .properties(width=max(PANEL, 60 * len(_models(df))), height=220)
    )


def behaviour_chart(prov: pd.DataFrame) -> alt.FacetChart:
    """Behaviour frequency per model with its 95% interval, coloured by provenance label."""
    base = alt.Chart(prov).encode(
        x=alt.X("model:N", sort=_models(prov), title=None, axis=alt.Axis(labelAngle=-30)),
        tooltip=[
            "behaviour:N", "model:N", "count:Q", "n:Q", alt.Tooltip("freq:Q", format=".0%"),
            alt.Tooltip("lo:Q", format=".0%"), alt.Tooltip("hi:Q", format=".0%"), "label:N",
        ],
    )  # fmt: skip
    bars = base.mark_rule(strokeWidth=2, color="#374151").encode(
        y=alt.Y(
            "lo:Q",
            title="frequency (95% interval)",
            axis=alt.Axis(format="%"),
            scale=alt.Scale(domain=[0, 1]),
        ),
        y2="hi:Q",
    )
    points = base.mark_point(filled=True, size=90).encode(
        y="freq:Q",
        color=alt.Color(
            "label:N", scale=alt.Scale(domain=LABELS, range=LABEL_COLOURS), title="provenance"
        ),
    )
    return (
        alt.layer(bars, points)
        .properties(width=max(PANEL, 45 * len(_models(prov))), height=180)
        .facet(
            facet=alt.Facet("behaviour:N", title=None, header=alt.Header(labelFontWeight="bold")),
            columns=3,
        )
    )


def first_token_chart(table: pd.DataFrame) -> alt.FacetChart:
    """First-token distribution per model: exact probability (bar) beside sampled share (tick)."""
    long = table.melt(
        id_vars=["model", "token"],
        value_vars=["exact", "sampled"],
        var_name="source",
        value_name="p",
    )
    long = long.dropna(subset=["p"])
    return (
        alt.Chart(long, title="First token: exact probability vs sampled share")
        .mark_bar()
        .encode(
            y=alt.Y("token:N", sort="-x", title=None),
            x=alt.X(
                "p:Q",
                title="probability",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            yOffset=alt.YOffset("source:N", sort=["exact", "sampled"]),
            color=alt.Color(
                "source:N",
                scale=alt.Scale(domain=["exact", "sampled"], range=["#2563eb", "#93c5fd"]),
            ),
            tooltip=["model:N", "token:N", "source:N", alt.Tooltip("p:Q", format=".1%")],
        )
        .properties(width=PANEL, height=alt.Step(9))
        .facet(column=alt.Column("model:N", sort=_models(table), title=None))
        .resolve_scale(y="independent")
    )


def entropy_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Mean next-token entropy along the response, one line per model, ±1 sd band."""
    df = table.assign(
        lo=(table["mean"] - table["sd"]).clip(lower=0), hi=table["mean"] + table["sd"]
    )
    base = alt.Chart(df, title="Entropy along the response").encode(
        x=alt.X("position:Q", title="response position (token)"),
        color=alt.Color("model:N", sort=_models(df)),
    )
    band = base.mark_area(opacity=0.15).encode(y=alt.Y("lo:Q", title="entropy (nats)"), y2="hi:Q")
    line = base.mark_line(point=True).encode(
        y="mean:Q", tooltip=["model:N", "position:Q", alt.Tooltip("mean:Q", format=".3f"), "n:Q"]
    )
    return alt.layer(band, line).properties(width=420, height=200)


def length_chart(samples_df: pd.DataFrame) -> alt.Chart:
    """Distribution of response lengths (tokens), one panel per model."""
    df = samples_df[["model", "n_tokens"]]
    return (
        alt.Chart(df, title="Response length")
        .mark_bar()
        .encode(
            x=alt.X("n_tokens:Q", bin=alt.Bin(step=1), title="tokens"),
            y=alt.Y("count():Q", title="samples"),
            column=_column(df),
            tooltip=["model:N", alt.Tooltip("n_tokens:Q", bin=alt.Bin(step=1)), "count():Q"],
        )
        .properties(width=PANEL - 40, height=140)
    )


def cross_score_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Sampler × scorer heatmap of mean log-prob per token (higher = more at home)."""
    models = _models(table, "sampler")
    base = alt.Chart(table, title="Cross-scoring: mean log-prob per token").encode(
        x=alt.X("scorer:N", sort=models, title="scored by", axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("sampler:N", sort=models, title="sampled from"),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("mean_logprob:Q", scale=alt.Scale(scheme="viridis"), title="log-prob"),
        tooltip=[
            "sampler:N",
            "scorer:N",
            alt.Tooltip("mean_logprob:Q", format=".3f"),
            "n_tokens:Q",
        ],
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("mean_logprob:Q", format=".2f"),
        color=alt.value("white"),
    )
    return alt.layer(heat, text).properties(width=48 * len(models) + 40, height=34 * len(models))


def token_ratio_chart(tokens: pd.DataFrame, value: str = "log_ratio") -> alt.LayerChart:
    """One response, token by token, coloured by `log p_model − log p_base` (or another value):
    a row per model, so where the adaptation acts stands out."""
    limit = max(float(tokens[value].abs().max() or 0.0), 1e-6)
    base = alt.Chart(tokens).encode(
        x=alt.X("position:O", title="response token"),
        y=alt.Y("model:N", sort=_models(tokens), title=None),
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color(
            f"{value}:Q",
            scale=alt.Scale(scheme="redblue", domain=[-limit, limit], reverse=True),
            title="log p − log p_base",
        ),  # fmt: skip
        tooltip=["model:N", "position:O", "token:N", alt.Tooltip(f"{value}:Q", format="+.3f")],
    )
    words = base.mark_text(fontSize=12).encode(text="token:N")
    return alt.layer(cells, words).properties(width=alt.Step(56), height=alt.Step(26))


def _position_labels(df: pd.DataFrame, pos: str, token: str) -> tuple[pd.Series, list[str]]:
    """Readable, unique axis labels "3 fox" kept in position order."""
    pairs = df[[pos, token]].drop_duplicates().sort_values(pos)
    labels = {p: f"{p} {t}" for p, t in zip(pairs[pos], pairs[token], strict=True)}
    return df[pos].map(labels), list(labels.values())


def attribution_heatmaps(
    df: pd.DataFrame, title: str = "Attribution", value: str = "score"
) -> alt.Chart:
    """Target × source heatmap per model, side by side, one colour scale shared by all models
    (diverging and symmetric, so 0 is white everywhere)."""
    data = df.copy()
    data["source"], sources = _position_labels(data, "source_pos", "source_token")
    data["target"], targets = _position_labels(data, "target_pos", "target_token")
    limit = max(float(data[value].abs().max() or 0.0), 1e-9)
    return (
        alt.Chart(data, title=title)
        .mark_rect()
        .encode(
            x=alt.X(
                "source:N",
                sort=sources,
                title="source token",
                axis=alt.Axis(labelAngle=-50, labelLimit=90),
            ),
            y=alt.Y("target:N", sort=targets, title="response token"),
            color=alt.Color(
                f"{value}:Q",
                scale=alt.Scale(scheme="redblue", domain=[-limit, limit], reverse=True),
                title=value,
            ),
            column=alt.Column(
                "model:N", sort=_models(data), title=None, header=alt.Header(labelFontWeight="bold")
            ),
            tooltip=["model:N", "target:N", "source:N", alt.Tooltip(f"{value}:Q", format="+.4f")],
        )
        .properties(width=alt.Step(16), height=alt.Step(16))
    )


def attribution_bars(spread: pd.DataFrame) -> alt.LayerChart:
    """Per prompt token: each model's mean attribution over its own samples, ± one sd."""
    data = spread.copy()
    data["source"], sources = _position_labels(data, "source_pos", "source_token")
    data["lo"], data["hi"] = data["mean"] - data["sd"], data["mean"] + data["sd"]
    models = _models(data)
    base = alt.Chart(data, title="Attribution over the models' own samples (mean ± sd)").encode(
        x=alt.X("source:N", sort=sources, title="prompt token", axis=alt.Axis(labelAngle=-40)),
        xOffset=alt.XOffset("model:N", sort=models),
        color=alt.Color("model:N", sort=models),
        tooltip=[
            "model:N",
            "source:N",
            alt.Tooltip("mean:Q", format="+.4f"),
            alt.Tooltip("sd:Q", format=".4f"),
            "n:Q",
        ],
    )
    bars = base.mark_bar().encode(y=alt.Y("mean:Q", title="attribution"))
    rules = base.mark_rule(color="#111827").encode(y="lo:Q", y2="hi:Q")
    return alt.layer(bars, rules).properties(width=alt.Step(14), height=200)  # 14 px per bar


def token_prob_chart(tokens: pd.DataFrame) -> alt.LayerChart:
    """One response, token by token, coloured by the model's probability of each token."""
    base = alt.Chart(tokens).encode(
        x=alt.X("position:O", title="response token"), y=alt.Y("model:N", title=None)
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color("prob:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="p(token)"),
        tooltip=["model:N", "position:O", "token:N", alt.Tooltip("prob:Q", format=".3f")],
    )
    words = base.mark_text(fontSize=12).encode(text="token:N")
    return alt.layer(cells, words).properties(width=alt.Step(56), height=alt.Step(26))
