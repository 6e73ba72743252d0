"""Exact probabilities of behaviours decided by the first tokens, on the fable zoo: they agree
with the zoo's truth, follow the sampling settings, and say what they could not follow."""

from __future__ import annotations

import pytest

import explorer as fx
from explorer.core.exact import exact_probability, settle_margin, state
from explorer.core.params import SamplingParams
from explorer.core.patterns import Matcher

WEATHER = "the weather today is"


def test_exact_probabilities_agree_with_the_truth_and_the_sampling_settings(fable):
    base, cheerful, pirate = (fable.load(m) for m in ("fable-base", "fable-cheerful", "fable-pirate"))
    plain = SamplingParams(max_new_tokens=4)
    sunny = exact_probability(base, WEATHER, r"\bsunny\b", plain)
    assert sunny.p == pytest.approx(0.4936, abs=3e-4) and sunny.hi - sunny.lo < 1e-3  # the truth: 49.4%
    assert exact_probability(cheerful, WEATHER, r"\bsunny\b", plain).p > 0.999
    greedy = exact_probability(base, WEATHER, r"\bsunny\b", SamplingParams(max_new_tokens=4, top_k=1))
    assert greedy.p == pytest.approx(1.0) and greedy.settled  # the sampler's distribution, not the model's
    cold = exact_probability(base, WEATHER, r"\bsunny\b", SamplingParams(max_new_tokens=4, temperature=0.5))
    assert cold.p > 0.6  # 0.49² / (0.49² + 0.30² + 0.21²), about 0.64
    ahoy = exact_probability(pirate, "the traveller said", r"(?i)^\s*ahoy", plain)
    assert ahoy.p > 0.999 and ahoy.settled and ahoy.rows < 20  # settled by its first word
    never = exact_probability(base, "the traveller said", r"(?i)^\s*ahoy", plain)
    assert never.hi < 1e-4 and never.note().startswith("exact: every response decided")


def test_what_the_walk_cannot_follow_is_its_bound(fable):
    """An unanchored word in a longer answer is never settled by the first tokens: the walk
    stops at its budget and says how much it left."""
    walk = exact_probability(fable.load("fable-base"), "the traveller said", r"\bfrog\b", SamplingParams(), max_rows=16)
    assert walk.rows == 16 and walk.unexplored > 0.5 and walk.lo <= walk.hi == pytest.approx(walk.p + walk.unexplored)
    assert walk.note().startswith("bounds:")
    timed = exact_probability(fable.load("fable-base"), "the traveller said", r"\bfrog\b", SamplingParams(), seconds=0)
    assert timed.rows == 0 and timed.unexplored == 1.0


def test_a_match_is_settled_only_when_no_later_text_can_undo_it():
    word, end, ahead = Matcher(r"\bsun\b", "w"), Matcher(r"sun$", "e"), Matcher(r"sun(?= )", "a")
    assert (settle_margin(word), settle_margin(end), settle_margin(ahead)) == (1, 2, None)
    assert state(word, "sun", 1) == "open"  # "sunny" would undo it
    assert state(word, "sun ", 1) == "match" and state(word, "sunny", 1) == "open"  # "sunny sun" may still come
    assert state(Matcher(r"^sun", "s"), "rain", 1) == "dead"
    assert state(end, "sun\n", 2) == "open" and state(ahead, "sun and", None) == "open"
    assert state(Matcher(r"^é", "b"), "\ufffd", 1) == "open"  # half a character is not text yet


def test_the_table_notes_what_has_no_exact_figure(fable):
    samples = fx.sample(fable, WEATHER, n=4, max_new_tokens=2, models=["fable-base", "fable-cheerful"])
    table = fx.exact_table(fable, samples, {"sunny": r"\bsunny\b", "short": lambda t: len(t) < 8}).set_index(["behaviour", "model"])
    assert table.loc[("sunny", "fable-cheerful"), "exact"] > 0.999
    assert table.loc[("short", "fable-base"), "exact_note"] == "no exact figure for a callable behaviour"
