"""Behaviours cannot hang the kernel: every user regex is bounded (explorer.core.patterns).

The table of bad behaviours lives in tests/bad_inputs.py with the other bad inputs; here each
runs through `fx.provenance` on samples that hold the text it is hostile to, in a thread that
must finish (a hang guard, not a timing), with the other behaviours still counted.
"""

from __future__ import annotations

import re
import threading

import pytest
from bad_inputs import BEHAVIOURS, HOSTILE, WORDS
from handmade import handmade

import explorer as fx
from explorer.core.patterns import (
    MATCH_SECONDS,
    Matcher,
    PatternTimeout,
    compile_pattern,
    nested_repeats,
)

HANG_GUARD = 120.0  # seconds: far beyond every limit; only a hang reaches it


def finished(work):
    """Run `work` in a thread and return its result; fail if it never returns."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(result=work()), daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), "the computation never returned"
    return box["result"]


def samples_of(text: str):
    return handmade({"base": [text, "sunny day", text, "rain"], "kid": [text, "good day", "day two", text]})


@pytest.mark.parametrize(("pattern", "text", "message"), [c[1:] for c in BEHAVIOURS], ids=[c[0] for c in BEHAVIOURS])
def test_every_bad_behaviour_gets_a_sentence_and_the_others_still_count(pattern, text, message):
    behaviours = {"odd": pattern, "day": r"\bday\b"}
    if message is not None and "took more than" not in message:  # refused before any matching
        with pytest.raises(ValueError, match=re.escape(message)):
            fx.provenance(samples_of(text), behaviours=behaviours)
        return
    with pytest.warns() if message else _nothing():
        table = finished(lambda: fx.provenance(samples_of(text), behaviours=behaviours))
    day = table[table["behaviour"] == "day"].set_index("model")["count"]
    assert day.to_dict() == {"base": 1, "kid": 2}
    if message is None:
        assert set(table["behaviour"]) == {"odd", "day"} and not table.attrs["skipped"]
    else:
        assert set(table["behaviour"]) == {"day"}
        assert message in table.attrs["skipped"]["odd"] and "'odd'" in table.attrs["skipped"]["odd"]


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_hostile_behaviour_is_bounded_by_its_budget_over_the_whole_table():
    """Each text alone may stay under the limit; the budget is shared by every text."""
    matcher = Matcher(HOSTILE[-1][1], "odd", seconds=0.2)
    with pytest.raises(PatternTimeout, match="took more than 0.2 s"):
        for _ in range(1000):
            matcher(WORDS)
    assert matcher.spent < 0.2 * 4  # regex's timeout overshoots a little, never by a hang


def test_the_focus_on_a_hostile_behaviour_is_a_sentence():
    from explorer.core.findings import responses_behind

    def work():
        try:
            responses_behind(samples_of(WORDS), None, {"odd": HOSTILE[-1][1]}, "odd", ["kid"])
        except PatternTimeout as err:
            return str(err)
        return "no sentence"

    sentence = finished(work)
    assert "'odd'" in sentence and "took more than" in sentence


def test_re_patterns_keep_their_flags_and_nested_repeats_are_counted():
    pattern = compile_pattern(re.compile(r"^ahoy", re.IGNORECASE | re.MULTILINE), "ahoy")
    assert pattern.search("well\nAHOY there")
    assert [nested_repeats(p) for p in (r"a{3}b{4}", r"(a{3}){4}", r"[{]{5}", r"\{9\}", r"(?:x{10,20}){,5}")] == [4, 12, 5, 1, 100]
    assert MATCH_SECONDS <= 2.0
