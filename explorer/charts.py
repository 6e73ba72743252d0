"""Chart builders: tidy DataFrame in, altair chart out. Nothing here displays anything.

Models are always placed side by side (a column per model, or a model axis) in family order, and
charts that compare models share one colour scale.
"""

from __future__ import annotations

import pandas as pd

from explorer.core.tokens import display
from explorer.lazy import LazyModule

alt = LazyModule("altair")  # imported by the first chart, not by the app's start

# One palette for provenance labels everywhere (the Findings matrix uses the same colours)
LABEL_STYLE = {"base": "#6b7280", "introduced": "#7c3aed", "amplified": "#15803d", "suppressed": "#b91c1c",
               "inherited": "#1d4ed8", "absent": "#d1d5db", "inconclusive": "#f59e0b"}  # fmt: skip
LABELS, LABEL_COLOURS = list(LABEL_STYLE), list(LABEL_STYLE.values())
PANEL = 170  # width of one model's panel, in pixels
FIT = 860  # the widest a chart may be: the app's content box at a 1024 px window, less margins
WRAP = 10  # tokens per line in the token-by-token charts
CELL = 16  # heatmap cells, in pixels (at least MIN_CELL where a row must fit)
MIN_CELL = 14


def columns_that_fit(panel_width: float) -> int:
    """How many panels of `panel_width` (plus the gap and axis) fit in FIT side by side."""
    return max(1, int(FIT // (panel_width + 40)))


def cell_for(n_columns: int) -> int:
    """Heatmap cell size: CELL where one model's panel of `n_columns` cells fits a line."""
    return CELL if CELL * n_columns + 150 <= FIT else MIN_CELL


def by_model(chart: alt.Chart, data: pd.DataFrame, panel_width: float) -> alt.FacetChart:
    """`chart` as one panel per model in family order, wrapped into rows of panels that fit."""
    return chart.facet(
        facet=alt.Facet("model:N", sort=_models(data), title=None, header=alt.Header(labelFontWeight="bold")),
        columns=columns_that_fit(panel_width),
    )


def readable(df: pd.DataFrame, column: str = "token") -> pd.DataFrame:
    """`column` as a person reads a token: line breaks and tabs as marks, never blank."""
    return df.assign(**{column: df[column].map(lambda t: display(str(t)))})


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
    width = max(PANEL, 45 * len(_models(prov)))
    return (
        alt.layer(bars, points)
        .properties(width=width, height=180)
        .facet(
            facet=alt.Facet("behaviour:N", title=None, header=alt.Header(labelFontWeight="bold")),
            columns=min(3, columns_that_fit(width + 30)),  # the y axis and its title
        )
    )


def first_token_chart(table: pd.DataFrame) -> alt.FacetChart:
    """First-token distribution per model: exact probability (bar) beside sampled share (tick)."""
    long = readable(table).melt(
        id_vars=["model", "token"],
        value_vars=["exact", "sampled"],
        var_name="source",
        value_name="p",
    )
    long = long.dropna(subset=["p"])
    panels = (
        alt.Chart(long)
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
    )
    return (
        by_model(panels, table, PANEL + 90)
        .resolve_scale(y="independent")
        .properties(title="First token: exact probability vs sampled share")
    )


def entropy_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Mean next-token entropy along the response, one line per model, ±1 sd band."""
    df = table.assign(
        lo=(table["mean"] - table["sd"]).clip(lower=0), hi=table["mean"] + table["sd"]
    )
    base = alt.Chart(df, title="Entropy along the response").encode(
        x=alt.X("position:Q", title="response position (token)"),
        color=alt.Color("model:N", sort=_models(df), legend=alt.Legend(symbolType="stroke", symbolStrokeWidth=3, symbolOpacity=1)),
    )  # fmt: skip
    band = base.mark_area(opacity=0.15).encode(
        y=alt.Y("lo:Q", title="entropy (nats)"), y2="hi:Q",
        tooltip=["model:N", "position:Q", alt.Tooltip("lo:Q", format=".3f"), alt.Tooltip("hi:Q", format=".3f")],
    )  # fmt: skip
    line = base.mark_line(point=True).encode(
        y="mean:Q", tooltip=["model:N", "position:Q", alt.Tooltip("mean:Q", format=".3f"), "n:Q"]
    )
    return alt.layer(band, line).properties(width=420, height=200)


def length_chart(samples_df: pd.DataFrame) -> alt.FacetChart:
    """Distribution of response lengths (tokens), one panel per model; one bar per length
    (lengths are whole numbers), panels wrapped into rows that fit. Counted here, one row per
    (model, length): a chart of every sample passed altair's 5000-row limit at n ≈ 1000 × 6."""
    df = samples_df.groupby(["model", "n_tokens"], sort=False).size().reset_index(name="samples")
    lengths = list(range(int(df["n_tokens"].min()), int(df["n_tokens"].max()) + 1)) if len(df) else [0]
    panels = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("n_tokens:O", scale=alt.Scale(domain=lengths), title="tokens",
                    axis=alt.Axis(labelAngle=0, values=lengths[:: max(1, len(lengths) // 12)])),
            y=alt.Y("samples:Q", title="samples"),
            tooltip=["model:N", alt.Tooltip("n_tokens:O", title="tokens"), "samples:Q"],
        )  # fmt: skip
        .properties(width=PANEL - 40, height=140)
    )
    return by_model(panels, df, PANEL).properties(title="Response length")


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
    tooltip = ["model:N", "position:O", "token:N", alt.Tooltip(f"{value}:Q", format="+.3f")]
    colour = alt.Color(f"{value}:Q", scale=alt.Scale(scheme="redblue", domain=[-limit, limit], reverse=True),
                       title="log p − log p_base")  # fmt: skip
    return _token_lines(tokens, colour, tooltip)


def _token_lines(tokens: pd.DataFrame, colour: alt.Color, tooltip: list) -> alt.FacetChart:
    """Token cells coloured by `colour`, WRAP tokens to a line (a long response wraps instead of
    running off the page), a row per model within each line."""
    df = readable(tokens).assign(line=tokens["position"] // WRAP, column=tokens["position"] % WRAP)
    base = alt.Chart().encode(
        x=alt.X("column:O", title=None, axis=None, scale=alt.Scale(domain=list(range(WRAP)))),
        y=alt.Y("model:N", sort=_models(tokens), title=None),
        tooltip=tooltip,
    )
    cells = base.mark_rect(stroke="white").encode(color=colour)
    words = base.mark_text(fontSize=12, limit=60).encode(text="token:N")
    return (
        alt.layer(cells, words, data=df)
        .properties(width=alt.Step(62), height=alt.Step(24))
        .facet(row=alt.Row("line:O", title=None, header=alt.Header(labels=False)), spacing=6)
    )


def _position_labels(df: pd.DataFrame, pos: str, token: str) -> tuple[pd.Series, list[str]]:
    """Readable, unique axis labels "3 fox" kept in position order."""
    pairs = df[[pos, token]].drop_duplicates().sort_values(pos)
    labels = {p: f"{p} {t}" for p, t in zip(pairs[pos], pairs[token], strict=True)}
    return df[pos].map(labels), list(labels.values())


def attribution_heatmaps(
    df: pd.DataFrame, title: str = "Attribution", value: str = "score"
) -> alt.Chart:
    """Target × source heatmap per model, side by side and wrapped into rows that fit, one
    colour scale shared by all models (diverging and symmetric, so 0 is white everywhere)."""
    data = df[["model", "target_pos", "target_token", "source_pos", "source_token", value]].copy()
    data["source"], sources = _position_labels(data, "source_pos", "source_token")
    data["target"], targets = _position_labels(data, "target_pos", "target_token")
    data = data[["model", "source", "target", value]]  # only what is drawn travels to the page
    limit = max(float(data[value].abs().max() or 0.0), 1e-9)
    cell = cell_for(len(sources))  # one model's panel fits a line
    panels = (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=alt.X(
                "source:N",
                sort=sources,
                title="source token",
                axis=alt.Axis(labelAngle=-50, labelLimit=90),
            ),
            y=alt.Y("target:N", sort=targets, title=None),  # rows: response tokens (the title says)
            color=alt.Color(
                f"{value}:Q",
                scale=alt.Scale(scheme="redblue", domain=[-limit, limit], reverse=True),
                title=value,
            ),
            tooltip=["model:N", "target:N", "source:N", alt.Tooltip(f"{value}:Q", format="+.4f")],
        )
        .properties(width=alt.Step(cell), height=alt.Step(cell))
    )
    return by_model(panels, data, cell * len(sources) + 110).properties(title=title)


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
    bar = max(3, min(14, FIT // max(1, len(sources) * len(models))))  # the step is per bar (xOffset)
    return alt.layer(bars, rules).properties(width=alt.Step(bar), height=200)


def token_prob_chart(tokens: pd.DataFrame) -> alt.LayerChart:
    """One response, token by token, coloured by the model's probability of each token."""
    colour = alt.Color("prob:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="p(token)")
    return _token_lines(tokens, colour, ["model:N", "position:O", "token:N", alt.Tooltip("prob:Q", format=".3f")])
