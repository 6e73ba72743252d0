"""Variability metrics on hand-made sample sets whose answers are worked out on paper."""

from __future__ import annotations

import math

import pytest
from handmade import handmade

import explorer as fx
from explorer.core.clustering import by_first_words, by_tfidf, normalise


@pytest.fixture
def weather():
    return handmade(
        {
            "a": ["sunny .", "sunny .", "rainy .", "cloudy ."],
            "b": ["Sunny!", "sunny .", "sunny .", "sunny arr . it was"],
        },
        first={"a": {"sunny": 0.5, "rainy": 0.3, "cloudy": 0.2}, "b": {"sunny": 1.0}},
    )


def row(table, model):
    return table.set_index("model").loc[model]


def test_metrics_worked_out_on_paper(weather):
    a = row(fx.variability(weather), "a")
    assert a["n"] == 4
    assert a["distinct_1"] == pytest.approx(4 / 8)  # {sunny . rainy cloudy} of 8 tokens
    assert a["distinct_2"] == pytest.approx(3 / 4)  # (sunny .)x2 (rainy .) (cloudy .)
    assert a["unique_share"] == pytest.approx(3 / 4)
    assert a["length_mean"] == 2 and a["length_sd"] == 0
    assert a["length_capped_share"] == 0
    assert a["mean_token_entropy"] == pytest.approx(0.75)  # entropies 0.5, 1.0 per response
    assert a["first_token_entropy"] == pytest.approx(
        -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2))
    )
    assert a["n_clusters"] == 3
    assert a["modal_cluster_share"] == pytest.approx(0.5)
    assert a["cluster_entropy"] == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))


def test_normalised_clusters_merge_case_and_punctuation(weather):
    b = row(fx.variability(weather), "b")
    assert b["n_clusters"] == 2  # "sunny" x3 and "sunny arr it was"
    assert b["modal_cluster_share"] == pytest.approx(3 / 4)
    assert b["length_capped_share"] == pytest.approx(1 / 4)  # the 4-token answer hit the cap
    assert b["first_token_entropy"] == 0


def test_pluggable_clusterers(weather):
    first = row(fx.variability(weather, clusterer=by_first_words(1)), "b")
    assert first["n_clusters"] == 1
    custom = row(fx.variability(weather, clusterer=lambda texts: ["x"] * len(texts)), "a")
    assert custom["n_clusters"] == 1 and custom["cluster_entropy"] == 0
    tfidf = by_tfidf(0.3)(["sunny today", "sunny", "rainy day", "rainy"])
    assert tfidf[0] == tfidf[1] and tfidf[2] == tfidf[3] and tfidf[0] != tfidf[2]
    with pytest.raises(ValueError, match="^clusterer: "):
        fx.variability(weather, clusterer="nope")


def test_registry_takes_user_metrics(weather):
    fx.register_metric(
        "share_sunny", lambda v: float(v.df["text"].str.contains("sunny", case=False).mean())
    )
    try:
        table = fx.variability(weather, metrics=["share_sunny", "n"])
        assert list(table.columns) == ["model", "share_sunny", "n"]
        assert row(table, "a")["share_sunny"] == 0.5 and row(table, "b")["share_sunny"] == 1.0
        assert "share_sunny" in set(fx.list_metrics()["metric"])
    finally:
        from explorer.core import metrics

        metrics._METRICS.pop("share_sunny")
    with pytest.raises(ValueError, match="^metrics: unknown"):
        fx.variability(weather, metrics=["share_sunny"])
    with pytest.raises(ValueError, match="^name: "):
        fx.register_metric("not a name", lambda v: 0.0)


def test_normalise():
    assert normalise("  Sunny!!  today ") == "sunny today"
    assert normalise("ÉTÉ") == "été"
