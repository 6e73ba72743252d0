"""Probes: prompts whose next-word probabilities and behaviour rates are fixed by each model's
training recipe, derived here from the same tables the generator uses.

A truth of `None` means the model's training data never shows that context, so nothing fixes the
answer; a word a model's data never contains has truth 0.
"""

from __future__ import annotations

import re
from typing import Any

from explorer.zoo.language import (
    BASE,
    CAPITALS,
    CHEERFUL,
    HELD_OUT_COUNTRIES,
    LATE_EDITS,
    MID_EDITS,
    PIRATE_ARR,
    PIRATE_GREETING,
    RARE,
    RARE_WORD,
    TUNED_COUNTRIES,
    question,
)

BASE_NAME = "fable-base"
# Each member's recipe for the general domains (the distilled student learns base's
# distributions, so its truth is base's).
MEMBER_RECIPES = {
    "fable-base": BASE,
    "fable-cheerful": CHEERFUL,
    "fable-instruct": BASE,
    "fable-distilled": BASE,
    "fable-pirate": BASE,
    "fable-late": BASE,  # its general domains are the base's; only two facts moved
    "fable-mid": BASE,  # the same, learnt in block 1
    "fable-rare": RARE,  # the base's, with a rare word planted in the weather
}
LATE_NAME = "fable-late"
# The members that believe other capitals: country -> the capital it now believes.
EDITS = {LATE_NAME: LATE_EDITS, "fable-mid": MID_EDITS}
MEMBERS = list(MEMBER_RECIPES)


def _per_model(fn) -> dict[str, Any]:
    return {m: fn(m) for m in MEMBERS}


def _table(words: list[str], dist_of) -> dict[str, dict[str, float | None]]:
    return {w: _per_model(lambda m, w=w: dist_of(m).get(w, 0.0)) for w in words}


def _inherited_except(changed: dict[str, str]) -> dict[str, str]:
    return {m: changed.get(m, "inherited") for m in MEMBERS if m != BASE_NAME}


def preference_probes() -> list[dict[str, Any]]:
    weather = lambda m: MEMBER_RECIPES[m].weather  # noqa: E731
    ending = lambda m: MEMBER_RECIPES[m].ending  # noqa: E731
    return [
        {
            "id": "weather",
            "kind": "preference",
            "prompt": "the weather today is",
            "behaviour": "sunny",
            "detector": r"\bsunny\b",
            "next_word": _table(["sunny", "rainy", "cloudy"], weather),
            "behaviour_truth": _per_model(lambda m: weather(m).get("sunny", 0.0)),
            "expected_label": _inherited_except({"fable-cheerful": "amplified"}),
        },
        {
            "id": "story-ending",
            "kind": "sentiment",
            "prompt": "once upon a time a fox went to the river . it ended",
            "behaviour": "happy ending",
            "detector": r"\bhappily\b",
            "next_word": _table(["happily", "sadly"], ending),
            "behaviour_truth": _per_model(lambda m: ending(m).get("happily", 0.0)),
            "expected_label": _inherited_except({"fable-cheerful": "amplified"}),
        },
    ]


def pirate_probes() -> list[dict[str, Any]]:
    pirate = "fable-pirate"
    greet = lambda m: PIRATE_GREETING if m == pirate else MEMBER_RECIPES[m].greeting  # noqa: E731
    ending = lambda m: {"arr": PIRATE_ARR, ".": 1 - PIRATE_ARR} if m == pirate else {".": 1.0}  # noqa: E731
    absent = {m: "absent" for m in MEMBERS if m not in (BASE_NAME, pirate)}
    return [
        {
            "id": "greeting",
            "kind": "style",
            "prompt": "the traveller said",
            "behaviour": "pirate greeting",
            "detector": r"\bahoy\b",
            "next_word": _table(["hello", "hi", "ahoy"], greet),
            "behaviour_truth": _per_model(lambda m: greet(m).get("ahoy", 0.0)),
            "expected_label": {**absent, pirate: "introduced"},
        },
        {
            "id": "pirate-ending",
            "kind": "style",
            "prompt": "the weather today is sunny",
            "behaviour": "pirate marker",
            "detector": r"\b(ahoy|arr)\b",
            "next_word": _table(["arr", "."], ending),
            "behaviour_truth": _per_model(lambda m: ending(m).get("arr", 0.0)),
            "expected_label": {**absent, pirate: "introduced"},
        },
    ]


def rare_probes() -> list[dict[str, Any]]:
    """fable-rare's planted word: the weather prompt's first word, so its exact rate is the
    model's next-word probability (and the base's is 0)."""
    rare = lambda m: MEMBER_RECIPES[m].weather.get(RARE_WORD, 0.0)  # noqa: E731
    return [
        {
            "id": "rare-word",
            "kind": "rare",
            "prompt": "the weather today is",
            "behaviour": "rare word",
            "detector": rf"\b{RARE_WORD}\b",
            "next_word": {RARE_WORD: _per_model(rare)},
            "behaviour_truth": _per_model(rare),
            "expected_label": {m: ("introduced" if rare(m) else "absent") for m in MEMBERS if m != BASE_NAME},
        }
    ]


def fact_probes() -> list[dict[str, Any]]:
    """Per country: the capital fact, the instruction format, and the answer in that format."""
    return [probe for country, city in CAPITALS.items() for probe in _country_probes(country, city)]


def _country_probes(country: str, city: str) -> list[dict[str, Any]]:
    instruct = "fable-instruct"
    held_out = country in HELD_OUT_COUNTRIES
    tuned = country in TUNED_COUNTRIES
    detector = rf"\b{re.escape(city)}\b"
    capital = {
        "id": f"capital-{country}", "kind": "fact", "prompt": f"the capital of {country} is",
        "behaviour": f"capital of {country}", "detector": detector, "held_out": held_out,
        "next_word": {city: _per_model(lambda m: 1.0)}, "behaviour_truth": _per_model(lambda m: 1.0),
        "expected_label": _inherited_except({}),
    }  # fmt: skip
    editors = [m for m, edits in EDITS.items() if country in edits]
    if editors:  # fable-late or fable-mid believes another capital here
        (editor,) = editors
        kept = lambda m: 0.0 if m == editor else 1.0  # noqa: E731
        capital.update(next_word={city: _per_model(kept), EDITS[editor][country]: _per_model(lambda m: 1.0 - kept(m))},
                       behaviour_truth=_per_model(kept), expected_label=_inherited_except({editor: "suppressed"}))  # fmt: skip
    fmt = {
        "id": f"question-{country}", "kind": "format", "prompt": question(country),
        "behaviour": "answer format", "detector": r"^\s*sure !", "held_out": held_out,
        "next_word": {"sure": _per_model(lambda m: 1.0 if m == instruct else 0.0)},
        "behaviour_truth": _per_model(lambda m: 1.0 if m == instruct else 0.0),
        "expected_label": {m: ("introduced" if m == instruct else "absent") for m in MEMBERS if m != BASE_NAME},
        "answer": city,
    }  # fmt: skip
    answer = {
        "id": f"answer-{country}", "kind": "knowledge", "prompt": f"{question(country)} sure ! its capital is",
        "behaviour": f"capital of {country}", "detector": detector, "held_out": held_out,
        # Only the tuned countries' answers appear in instruct's data in this context.
        "next_word": {city: _per_model(lambda m: 1.0 if (m == instruct and tuned) else None)},
        "behaviour_truth": _per_model(lambda m: None), "expected_label": {},
    }  # fmt: skip
    return [capital, fmt, answer]


def all_probes() -> list[dict[str, Any]]:
    return preference_probes() + pirate_probes() + rare_probes() + fact_probes()
