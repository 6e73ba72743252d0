"""Discover on the fable zoo, whose truth is known: with the defaults and no hint of what to
find, it must rank and mine what each recipe changed, and its confirmed findings must hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from exact_responses import responses
from handmade import handmade

import explorer as fx
from explorer.core.discover import compare
from explorer.core.discover.propose import behaviours_by_prompt, proposers_by_prompt
from explorer.core.discover.stages import page_intervals
from explorer.core.labels import truth_contradicts
from explorer.core.patterns import Matcher
from explorer.core.scoring import kl_js, scorer_inputs
from explorer.zoo.language import CAPITALS, LATE_EDITS

pytestmark = pytest.mark.slow
TRUTH = {  # descendant: (direction, word) that its recipe changed, and what the label must claim
    "fable-pirate": [("raised", "ahoy"), ("raised", "arr")],
    "fable-cheerful": [("raised", "sunny"), ("raised", "happily"), ("lowered", "rainy"), ("lowered", "cloudy"), ("lowered", "sadly")],
    "fable-instruct": [("raised", "sure")],
    "fable-late": [("raised", "tirwick"), ("raised", "sylport")],
}  # fmt: skip
CLAIM = {"raised": ("introduced", "amplified"), "lowered": ("suppressed",)}


@pytest.fixture(scope="module")
def found(fable):
    return fx.discover(fable)  # the defaults: the zoo's probes, 8 samples, confirmed on 128


def top_words(found, model: str, direction: str, k: int = 5, key: str = "word_rank") -> list[str]:
    words = found.words[(found.words["model"] == model) & (found.words["direction"] == direction)]
    return list(words.sort_values(key)["word"].head(k))


@pytest.mark.parametrize("model", list(TRUTH))
def test_mining_puts_what_each_recipe_changed_in_its_top_five(found, model):
    for direction, word in TRUTH[model]:
        assert word in top_words(found, model, direction), (direction, word, top_words(found, model, direction))


@pytest.mark.parametrize("model", list(TRUTH))
def test_the_confirmation_labels_them_as_the_truth_says(found, model):
    """Each true change is confirmed, in the direction the recipe changed it, on a prompt where
    it was proposed so (a word may be raised on one prompt and lowered on another: fable-late's
    capitals swap places)."""
    table = found.findings[found.findings["model"] == model].merge(
        found.candidates[["prompt_index", "word", "model", "direction"]].rename(columns={"word": "behaviour"}),
        on=["prompt_index", "behaviour", "model"])  # fmt: skip
    for direction, word in TRUTH[model]:
        labels = set(table[(table["behaviour"] == word) & (table["direction"] == direction)]["label"])
        assert labels & set(CLAIM[direction]), (word, labels)


def test_divergence_ranks_fable_lates_two_edits_first_and_distilled_stays_the_base(found):
    late = found.df[found.df["model"] == "fable-late"].sort_values("rank")
    edited = {f"the capital of {country} is" for country in LATE_EDITS}
    assert set(late["prompt"].head(2)) == edited
    others = late[late["prompt"].str.startswith("the capital of") & ~late["prompt"].isin(edited)]
    assert len(others) == len(CAPITALS) - len(LATE_EDITS) and others["kl_mean"].max() < 0.01
    distilled = found.df[found.df["model"] == "fable-distilled"]
    assert distilled["kl_mean"].max() < 0.05 and distilled["kl_mean_on_base"].max() < 0.05 and distilled["stays"].all()


def test_the_top_k_statistic_ranks_tail_tokens_the_excess_ranking_does_not(found):
    """diffing-toolkit's top-K counts beside the default: for the full fine-tune (cheerful) the
    tokens most often among the top-K raised barely change in probability: the log-ratio of
    small probabilities moves while what the model says does not. The excess ranking's top
    tokens gain over fifty times as much."""
    tokens = found.tokens[(found.tokens["model"] == "fable-cheerful") & (found.tokens["direction"] == "raised")]
    change = (tokens["p_desc"] - tokens["p_base"]).abs()
    by_top_k, by_excess = change[tokens["rank_top_k"] <= 3], change[tokens["rank"] <= 3]
    assert by_excess.min() > 50 * by_top_k.max(), tokens.sort_values("rank_top_k").head(3)


def test_kl_and_log_ratios_match_a_direct_computation(fable):
    """The comparison pass against scoring's KL on the same teacher-forced distributions, with
    chunks forced down to one row (a 262k vocabulary takes this path)."""
    samples = fx.sample(fable, "the weather today is", n=4, seed=3)
    desc, prefix_d = scorer_inputs(fable, samples, "fable-cheerful")
    base, prefix_b = scorer_inputs(fable, samples, "fable-base")
    own = samples.df[samples.df["model"] == "fable-cheerful"]
    rows = compare.Rows("desc", list(own["sample"]), [list(ids) for ids in own["token_ids"]])
    whole = compare.compare_pair(desc, base, (prefix_d, prefix_b), [rows])
    old, compare.MAX_FLOATS = compare.MAX_FLOATS, 1
    try:
        chunked = compare.compare_pair(desc, base, (prefix_d, prefix_b), [rows])
    finally:
        compare.MAX_FLOATS = old
    lp_d = torch.cat(desc.continuation_logprobs([prefix_d] * len(rows.ids), rows.ids, full=True))
    lp_b = torch.cat(base.continuation_logprobs([prefix_b] * len(rows.ids), rows.ids, full=True))
    expected, _ = kl_js(lp_d, lp_b)
    assert np.allclose(whole.kl["desc"], expected.numpy(), atol=1e-5)
    assert np.allclose(chunked.kl["desc"], whole.kl["desc"], atol=1e-6)
    assert torch.allclose(chunked.stats.excess, whole.stats.excess, atol=1e-6)
    ratio = [float(lp_d[i, t] - lp_b[i, t]) for i, t in enumerate(t for ids in rows.ids for t in ids)]
    assert np.isclose(sum(whole.log_ratio["desc"]), sum(ratio), atol=1e-4)


def test_a_discovery_saves_and_loads_losslessly(found, tmp_path):
    found.save(tmp_path / "d.json")
    back = fx.Discovery.load(tmp_path / "d.json")
    for name in ("df", "tokens", "words", "candidates", "findings", "contexts"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(found, name), check_dtype=False)
    assert back.samples.keys() == found.samples.keys() and back.meta["rank_by"] == "excess"
    pd.testing.assert_frame_equal(back.confirmations[0].df, found.confirmations[0].df, check_dtype=False)


# --- the guarantee, simulated against the zoo's exact response distributions --------------------


def exact_tables(fable, found) -> dict:
    """prompt index -> model -> ({response: probability}, dropped mass), for the base and the
    proposers of every prompt whose candidates were confirmed."""
    prompts = found.prompts.set_index("prompt_index")["prompt"]
    judged = {i: [fable.base.label, *sorted({m for ms in words.values() for m in ms})]
              for i, words in proposers_by_prompt(found.candidates).items()}  # fmt: skip
    return {i: {m: responses(fable.load(m), prompts[i]) for m in models} for i, models in judged.items()}


def simulate(found, exact: dict, seeds: int, n: int = 128) -> tuple[float, int]:
    """Share of runs whose confirmed labels (drawn as confirmation draws them, from the exact
    distributions) hold any false claim; and the number of labels a run decides."""
    behaviours, proposers = behaviours_by_prompt(found.candidates), proposers_by_prompt(found.candidates)
    intervals = page_intervals(proposers)
    rng = np.random.default_rng(0)
    false_runs, decided = 0, 0
    for _ in range(seeds):
        wrong = False
        for index, found_here in behaviours.items():
            drawn = {m: draw(rng, *exact[index][m], n) for m in exact[index]}
            table = fx.provenance(handmade(drawn), behaviours=found_here, intervals=intervals, warn=False)
            truth = {(b, m): rate(exact[index][m][0], spec) for b, spec in found_here.items() for m in drawn}
            for r in table[table["label"] != "base"].itertuples():
                if r.model not in proposers[index][r.behaviour]:
                    continue  # not judged there (discover drops that row)
                decided += r.label != "inconclusive"
                base = next(iter(drawn))
                wrong |= truth_contradicts(r.label, truth[(r.behaviour, base)], truth[(r.behaviour, r.model)])
        false_runs += wrong
    return false_runs / seeds, decided // seeds


def draw(rng, table: dict[str, float], dropped: float, n: int) -> list[str]:
    texts = [*table, "\x00dropped"]
    p = np.array([*table.values(), dropped])
    return [texts[i] for i in rng.choice(len(texts), size=n, p=p / p.sum())]


def rate(table: dict[str, float], spec: str) -> float:
    match = Matcher(spec, "truth", seconds=60)
    return sum(p for text, p in table.items() if match(text))  # the dropped mass matches nothing, here as in `draw`


def test_no_confirmed_discovery_contradicts_the_truth_in_95_percent_of_runs(fable, found):
    """Discovery's candidates are fixed (they come from other samples); each simulated run draws
    the confirmation samples afresh from every model's exact distribution on those prompts and
    labels the candidates with the page's intervals, as `discover` does."""
    share, decided = simulate(found, exact_tables(fable, found), seeds=100)
    print(f"\nruns with a false confirmed label: {share:.1%}; labels decided per run: {decided}")
    assert share <= 0.05 and decided >= 10
