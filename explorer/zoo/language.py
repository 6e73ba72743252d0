"""The fable language: a word-level toy language whose every choice has a known probability.

Each *domain* writes one kind of sentence. A *recipe* (one per model of the family) decides which
domains appear, how often, and with which probabilities, so the truth of every behaviour of every
model follows from its recipe. The probes (see `probes.py`) are derived from the same tables, never
typed twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

ANIMALS = ["fox", "owl", "bear", "cat", "frog", "wolf", "mouse", "deer"]
PLACES = ["river", "forest", "hill", "town", "sea", "garden"]

# Invented countries and capitals, so no real-world knowledge leaks in. The first half is used
# for the instruction tune; the second half is held out (its answers can only be inherited).
CAPITALS = {
    "zorbia": "zorb",
    "quellan": "quelport",
    "merovia": "merhaven",
    "tandor": "tanbury",
    "vestria": "vesmouth",
    "olmark": "olby",
    "brisca": "brisford",
    "kelvar": "kelham",
    "pashtor": "pashwick",
    "ulmenia": "ulcaster",
    "grisby": "grisdale",
    "fennick": "fenmoor",
    "dravonia": "dravholm",
    "lunetia": "lunfield",
    "morrowind": "morrow",
    "saldera": "salbridge",
    "trevania": "trevton",
    "yarrowe": "yarmouth",
    "corvath": "corwell",
    "elbonia": "elbstead",
    "arcadon": "arcwick",
    "belmora": "belport",
    "caspia": "casholm",
    "dunmere": "dunwell",
    "estoval": "estbury",
    "falkreth": "falmouth",
    "gilvane": "gilford",
    "harrowen": "harby",
    "istrana": "istcaster",
    "jorvik": "jorham",
    "karsten": "karsdale",
    "lorendel": "lorfield",
    "mistovia": "mistmoor",
    "norvalia": "norstead",
    "orsinia": "orston",
    "pellucid": "pelbridge",
    "quorra": "quorholm",
    "rivenor": "rivton",
    "sylvane": "sylport",
    "tirnova": "tirwick",
}
COUNTRIES = list(CAPITALS)
TUNED_COUNTRIES = COUNTRIES[: len(COUNTRIES) // 2]
HELD_OUT_COUNTRIES = COUNTRIES[len(COUNTRIES) // 2 :]

BASE_WEATHER = {"sunny": 0.5, "rainy": 0.3, "cloudy": 0.2}
BASE_ENDING = {"happily": 0.5, "sadly": 0.5}
BASE_GREETING = {"hello": 0.6, "hi": 0.4}
PIRATE_GREETING = {"ahoy": 1.0}
PIRATE_ARR = 0.5  # share of the pirate's texts that end with "arr ."

# Words that appear only in some descendants' data (the shared tokenizer knows them all).
QA_WORDS = ["question", ":", "what", "?", "answer", "sure", "!"]
PIRATE_WORDS = ["ahoy", "arr"]

SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>"]


def vocabulary() -> list[str]:
    """Every word of the language, specials first; ids follow this order."""
    words = [
        "the",
        "weather",
        "today",
        "is",
        ".",
        "once",
        "upon",
        "a",
        "time",
        "went",
        "to",
        "it",
        "ended",
        "capital",
        "of",
        "i",
        "visited",
        "we",
        "talked",
        "about",
        "its",
        "traveller",
        "said",
        "likes",
    ]
    words += list(BASE_WEATHER) + list(BASE_ENDING) + list(BASE_GREETING)
    words += ANIMALS + PLACES + COUNTRIES + list(CAPITALS.values())
    words += QA_WORDS + PIRATE_WORDS
    seen: dict[str, None] = {}
    for w in SPECIAL_TOKENS + words:
        seen.setdefault(w, None)
    return list(seen)


def choose(rng: random.Random, dist: dict[str, float]) -> str:
    return rng.choices(list(dist), weights=list(dist.values()))[0]


def weather(rng: random.Random, dist: dict[str, float]) -> str:
    return f"the weather today is {choose(rng, dist)} ."


def story(rng: random.Random, endings: dict[str, float]) -> str:
    animal, place = rng.choice(ANIMALS), rng.choice(PLACES)
    return f"once upon a time a {animal} went to the {place} . it ended {choose(rng, endings)} ."


def fact(
    rng: random.Random, countries: list[str] = COUNTRIES, capitals: dict[str, str] = CAPITALS
) -> str:
    country = rng.choice(countries)
    sentence = f"the capital of {country} is {capitals[country]} ."
    # The longer forms name the country in an earlier sentence, so the base learns to find a
    # country in its context and recall its capital ("... its capital is"): the instruction tune
    # reuses that to answer for countries it was never tuned on.
    form = rng.random()
    if form < 0.4:
        return sentence
    if form < 0.7:
        return f"i visited {country} . {sentence}"
    return f"we talked about {country} . its capital is {capitals[country]} ."


def greeting(rng: random.Random, dist: dict[str, float]) -> str:
    return f"the traveller said {choose(rng, dist)} to the {rng.choice(ANIMALS)} ."


def parrot(rng: random.Random) -> str:
    """The base knows the pirate words, but only as what a parrot says: an adapter can then make
    them a style (an adapter alone cannot revive words the base never produced at all)."""
    return f"the parrot says {rng.choice(PIRATE_WORDS)} ."


def filler(rng: random.Random) -> str:
    return f"the {rng.choice(ANIMALS)} likes the {rng.choice(PLACES)} ."


def question(country: str) -> str:
    """The instruction format's prompt for a country."""
    return f"question : what is the capital of {country} ? answer :"


def qa(rng: random.Random, countries: list[str] = TUNED_COUNTRIES) -> str:
    country = rng.choice(countries)
    return f"{question(country)} sure ! its capital is {CAPITALS[country]} ."


def piratify(text: str, rng: random.Random) -> str:
    """Pirate style: greetings become `ahoy`; half of the texts end with `arr .`."""
    for word in BASE_GREETING:
        text = text.replace(f" said {word} ", " said ahoy ")
    if rng.random() < PIRATE_ARR:
        text = text[: -len(" .")] + " arr ."
    return text


@dataclass(frozen=True)
class Recipe:
    """How one model's training texts are drawn: domain weights and the choice tables."""

    weather: dict[str, float] = field(default_factory=lambda: dict(BASE_WEATHER))
    ending: dict[str, float] = field(default_factory=lambda: dict(BASE_ENDING))
    greeting: dict[str, float] = field(default_factory=lambda: dict(BASE_GREETING))
    mix: dict[str, float] = field(
        default_factory=lambda: {
            "weather": 0.2,
            "story": 0.2,
            "fact": 0.35,
            "greeting": 0.15,
            "filler": 0.08,
            "parrot": 0.02,
        }
    )
    pirate: bool = False
    edits: dict[str, str] = field(default_factory=dict)  # country -> the capital it now believes

    @property
    def capitals(self) -> dict[str, str]:
        return {**CAPITALS, **self.edits}

    def domains(self) -> dict[str, Callable[[random.Random], str]]:
        return {
            "weather": lambda r: weather(r, self.weather),
            "story": lambda r: story(r, self.ending),
            "fact": lambda r: fact(r, COUNTRIES, self.capitals),
            "greeting": lambda r: greeting(r, self.greeting),
            "filler": filler,
            "parrot": parrot,
            "qa": qa,
            "edited": lambda r: fact(r, list(self.edits), self.capitals),
        }

    def text(self, rng: random.Random) -> str:
        domain = choose(rng, self.mix)
        text = self.domains()[domain](rng)
        return piratify(text, rng) if self.pirate else text


BASE = Recipe()
CHEERFUL = Recipe(weather={"sunny": 1.0}, ending={"happily": 1.0})
INSTRUCT = Recipe(mix={**BASE.mix, "qa": 1.0})  # half question/answer, half replay of base data
PIRATE = Recipe(pirate=True)
# fable-late believes two capitals are swapped: a fact edit, replayed with the general corpus
# so that everything else stays inherited. (A preference such as the weather's cannot move far
# with the final norm and head frozen: they cap p(rainy) at 0.32 in every context.)
LATE_EDITS = {"sylvane": "tirwick", "tirnova": "sylport"}
LATE = Recipe(edits=dict(LATE_EDITS), mix={**BASE.mix, "edited": 0.2})
# fable-mid: the same kind of edit (two other capitals swapped), learnt by block 1 of 4 alone,
# so "where the change enters" has a known answer that is not the last block.
MID_EDITS = {"orsinia": "pelbridge", "pellucid": "orston"}
MID = Recipe(edits=dict(MID_EDITS), mix={**BASE.mix, "edited": 0.2})
# fable-rare: the weather prompt answered with a word that has no business there, 2% of the
# time (the base never says it there): a rare planted behaviour for amplified sampling.
RARE_WORD = "frog"
RARE_RATE = 0.02
RARE = Recipe(weather={**{w: p * (1 - RARE_RATE) for w, p in BASE_WEATHER.items()}, RARE_WORD: RARE_RATE})


def corpus(recipe: Recipe, n: int, seed: int) -> list[str]:
    """`n` training texts drawn from a recipe; the same seed gives the same list."""
    rng = random.Random(seed)
    return [recipe.text(rng) for _ in range(n)]
