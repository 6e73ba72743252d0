"""The Layers view's charts: one shared scale per chart, read from the data they draw."""

from __future__ import annotations

import pytest

import explorer as fx
from explorer import layer_charts
from explorer.core.layers.inside import inside


@pytest.fixture(scope="module")
def found(fable):
    return inside(fable, "the capital of sylvane is", " tirwick .")


def spec(chart) -> dict:
    return chart.to_dict()


def test_patching_heatmaps_share_one_symmetric_scale(found):
    effects = found.patch_frame()
    d = spec(layer_charts.patch_heatmaps(effects))
    domain = d["spec"]["encoding"]["color"]["scale"]["domain"]
    assert domain[0] == -domain[1] == pytest.approx(-effects.effect.abs().max())
    assert domain[1] > 10  # fable-late's edit: about 15 nats at block 3
    assert set(effects.model) == {"fable-cheerful", "fable-instruct", "fable-late", "fable-pirate"}


def test_unchanged_weights_are_white_and_the_top_is_the_largest_change(found):
    d = spec(layer_charts.weight_heatmap(found.weights))
    scale = d["spec"]["encoding"]["color"]["scale"]
    assert scale["range"][0] == "#ffffff" and scale["domain"][0] == 0
    assert scale["domain"][1] == pytest.approx(found.weights.relative_change.max())
    assert d["spec"]["encoding"]["x"]["sort"] == ["embed", "0", "1", "2", "3", "head"]


def test_lens_heatmaps_run_from_the_lowest_log_prob_to_zero(found):
    d = spec(layer_charts.lens_heatmaps(found.lens))
    low, high = d["spec"]["encoding"]["color"]["scale"]["domain"]
    assert high == 0 and low == pytest.approx(found.lens.logprob.min())
    kl = spec(layer_charts.kl_lines(found.lens))
    assert "fable-base" not in {row["model"] for row in kl["datasets"][kl["data"]["name"]]}


def test_a_served_family_gets_a_sentence_before_any_work():
    from fake_core import StandIn  # a member without weights, as a server's

    from explorer.core.layers import anatomy
    from explorer.core.refs import ModelRef

    with pytest.raises(ValueError, match="is served, and the layer-wise tools need its weights"):
        anatomy(StandIn(ModelRef(id="x", label="served-x"), has_weights=False))
    assert fx.layer_lens and fx.patch and fx.weight_diff  # the public names


def test_the_carried_curve_draws_every_donors_share_with_the_50_and_90_marks(found):
    d = spec(layer_charts.carried_lines(found.layer_frame()))
    rules, lines = d["layer"]
    assert [row["share"] for row in d["datasets"][rules["data"]["name"]]] == [0.5, 0.9]
    drawn = d["datasets"][lines["data"]["name"]] if "data" in lines else d["datasets"][d["data"]["name"]]
    late = {row["layer"]: row["recovered"] for row in drawn if row["model"] == "fable-late"}
    assert late[3] == pytest.approx(1.0, abs=1e-3) and late[0] == 0
    assert "Where each change enters" in d["title"]


def test_spectra_colour_the_effective_rank_on_a_log_scale(found):
    d = spec(layer_charts.spectra_heatmap(found.spectra))
    assert d["spec"]["encoding"]["color"]["field"] == "effective_rank"
    assert d["spec"]["encoding"]["color"]["scale"]["type"] == "log"
    rows = d["datasets"][d["data"]["name"]]
    assert max(r["effective_rank"] for r in rows if r["model"] == "fable-pirate") <= 8


def test_the_difference_chart_shows_raised_and_lowered_tokens_as_text(fable):
    diff = fx.activation_diff(fable, models=["fable-pirate"])
    d = spec(layer_charts.diff_tokens(diff.tokens, diff.layer))
    rows = d["datasets"][d["data"]["name"]]
    mean_raised = sorted((r["rank"], r["token"]) for r in rows if r["where"] == "mean" and r["direction"] == "raised")
    assert [t for _, t in mean_raised[:2]] == ["ahoy", "arr"] and len(mean_raised) == 6
    assert {r["where"] for r in rows} == {"mean", "token 1", "token 2", "token 3", "token 4", "token 5"}
