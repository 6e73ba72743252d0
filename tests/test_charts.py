"""Every chart builder: the spec carries the right data and encodings, and it renders to PNG."""

from __future__ import annotations

import altair as alt
import pandas as pd
import pytest
import vl_convert as vlc
from handmade import handmade

import explorer as fx
from explorer import charts
from explorer.core.tables import (
    cluster_counts,
    entropy_by_position,
    first_token_comparison,
    response_tokens,
)


@pytest.fixture(scope="module")
def samples():
    return handmade(
        {
            "fable-base": ["sunny .", "rainy .", "sunny .", "cloudy ."],
            "fable-cheerful": ["sunny .", "sunny .", "sunny .", "sunny arr ."],
        },
        first={
            "fable-base": {"sunny": 0.5, "rainy": 0.3, "cloudy": 0.2},
            "fable-cheerful": {"sunny": 1.0},
        },
    )


def data_of(spec: dict) -> list[dict]:
    return next(iter(spec["datasets"].values()))


def png(chart) -> bytes:
    image = vlc.vegalite_to_png(chart.to_json(), scale=1)
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(image) > 2000
    return image


def test_clusters_chart(samples):
    chart = charts.clusters_chart(cluster_counts(samples))
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["y"]["field"] == "share"
    shares = {(r["model"], r["cluster"]): r["share"] for r in data_of(spec)}
    assert shares[("fable-base", "sunny")] == 0.5
    assert shares[("fable-cheerful", "sunny")] == 0.75
    assert spec["encoding"]["x"]["sort"] == ["fable-base", "fable-cheerful"]
    png(chart)


def test_behaviour_chart(samples):
    prov = fx.provenance(samples, behaviours={"sunny": r"\bsunny\b"})
    chart = charts.behaviour_chart(prov)
    spec = chart.to_dict()
    layers = spec["spec"]["layer"]
    assert [layer["mark"]["type"] for layer in layers] == ["rule", "point"]
    assert layers[0]["encoding"]["y2"]["field"] == "hi"
    assert layers[1]["encoding"]["color"]["scale"]["domain"] == charts.LABELS
    freqs = {r["model"]: r["freq"] for r in data_of(spec)}
    assert freqs == {"fable-base": 0.5, "fable-cheerful": 1.0}
    png(chart)


def test_first_token_chart(samples):
    table = first_token_comparison(samples)
    base = table[table["model"] == "fable-base"].set_index("token")
    assert base.loc["sunny", "exact"] == 0.5 and base.loc["sunny", "sampled"] == 0.5
    assert base.loc["cloudy", "sampled"] == 0.25
    chart = charts.first_token_chart(table)
    spec = chart.to_dict()
    assert spec["spec"]["encoding"]["yOffset"]["field"] == "source"
    assert {r["source"] for r in data_of(spec)} == {"exact", "sampled"}
    png(chart)


def test_entropy_chart(samples):
    table = entropy_by_position(samples)
    assert table[(table["model"] == "fable-base") & (table["position"] == 1)]["mean"].item() == 1.0
    chart = charts.entropy_chart(table)
    assert [
        layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
        for layer in chart.to_dict()["layer"]
    ] == ["area", "line"]
    png(chart)


def test_length_chart(samples):
    chart = charts.length_chart(samples.df)
    spec = chart.to_dict()
    assert spec["facet"]["field"] == "model" and spec["columns"] >= 1  # panels wrap into rows
    x = spec["spec"]["encoding"]["x"]
    assert x["type"] == "ordinal" and x["scale"]["domain"] == [2, 3]  # whole lengths, a bar for each
    assert sorted((r["n_tokens"], r["samples"]) for r in data_of(spec)) == [(2, 3), (2, 4), (3, 1)]  # per model and length
    many = pd.DataFrame({"model": ["a", "b"] * 3000, "n_tokens": list(range(6)) * 1000})  # a decided run's samples
    assert len(data_of(charts.length_chart(many).to_dict())) == 6  # not altair's 5000-row error
    png(chart)


def test_cross_score_chart(fable):
    s = fx.sample(
        fable, "the weather today is", n=8, seed=0, models=["fable-base", "fable-cheerful"]
    )
    chart = charts.cross_score_chart(fx.cross_score(fable, s))
    spec = chart.to_dict()
    assert spec["layer"][0]["encoding"]["color"]["field"] == "mean_logprob"
    assert len(data_of(spec)) == 4
    png(chart)


def test_token_ratio_chart(fable):
    s = fx.sample(
        fable, "the weather today is", n=4, seed=0, models=["fable-base", "fable-cheerful"]
    )
    tokens = response_tokens(fx.log_ratio(fable, s), sample=0)
    chart = charts.token_ratio_chart(tokens)
    spec = chart.to_dict()
    scale = spec["spec"]["layer"][0]["encoding"]["color"]["scale"]
    assert scale["domain"][0] == -scale["domain"][1]  # symmetric around "no change"
    assert spec["facet"]["row"]["field"] == "line"  # long responses wrap
    assert {r["model"] for r in data_of(spec)} == {"fable-base", "fable-cheerful"}
    png(chart)


def test_builders_return_charts_and_never_display(samples):
    for chart in (charts.clusters_chart(cluster_counts(samples)), charts.length_chart(samples.df)):
        assert isinstance(chart, alt.TopLevelMixin)


def test_attribution_heatmaps_share_one_symmetric_scale(fable):
    attr = fx.attribute(
        fable,
        "the weather today is",
        "sunny .",
        method="occlusion",
        models=["fable-base", "fable-cheerful"],
    )
    chart = charts.attribution_heatmaps(attr.df)
    spec = chart.to_dict()
    assert spec["facet"]["field"] == "model"
    scale = spec["spec"]["encoding"]["color"]["scale"]
    assert scale["domain"][0] == -scale["domain"][1] == -attr.df["score"].abs().max()
    assert spec["spec"]["encoding"]["x"]["sort"][0] == "0 <bos>"
    png(chart)
    diff = attr.diff()
    diff_chart = charts.attribution_heatmaps(
        diff[diff["model"] != "fable-base"], title="minus base"
    )
    assert {r["model"] for r in data_of(diff_chart.to_dict())} == {"fable-cheerful"}
    png(diff_chart)


def test_attribution_bars_show_mean_and_spread(fable):
    s = fx.sample(
        fable, "the weather today is", n=3, seed=0, models=["fable-base", "fable-cheerful"]
    )
    spread = fx.attribute_samples(fable, s, method="grad_x_input")
    chart = charts.attribution_bars(spread)
    spec = chart.to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["bar", "rule"]
    rows = data_of(spec)
    assert all(r["lo"] <= r["mean"] <= r["hi"] for r in rows)
    png(chart)


def rendered_width(chart) -> float:
    """The drawn width of a chart in pixels (its SVG, rendered by vl-convert)."""
    import re

    import vl_convert as vlc

    svg = vlc.vegalite_to_svg(chart.to_json())
    return float(re.search(r'<svg[^>]* width="([0-9.]+)"', svg).group(1))


def test_charts_of_five_models_and_long_texts_fit_a_1024_px_page(fable):
    """Wrapped rather than cut off: the widest chart of a 5-model run fits the content box."""
    s = fx.sample(fable, "once upon a time", n=8, max_new_tokens=24, seed=0)
    response = max(s.texts("fable-base"), key=len)
    attr = fx.attribute(fable, s.prompt, response, method="grad_x_input")
    tokens = response_tokens(fx.log_ratio(fable, s), sample=0)
    widths = {
        "first tokens": rendered_width(charts.first_token_chart(first_token_comparison(s))),
        "lengths": rendered_width(charts.length_chart(s.df)),
        "heatmaps": rendered_width(charts.attribution_heatmaps(attr.df)),
        "tokens": rendered_width(charts.token_ratio_chart(tokens)),
    }
    print("\n" + ", ".join(f"{k} {v:.0f} px" for k, v in widths.items()))
    assert all(v <= charts.FIT + 120 for v in widths.values()), widths  # legend beside: ≤ ~980 px
