"""The bad inputs of the hardening issue, one table for the API tests and the app tests."""

from __future__ import annotations

import shutil

from synthetic import synthetic_tokenizer
from tiny import pickled_llama, tiny_bert

# (id, sampling settings, the message that must explain it)
SAMPLING = [
    ("empty prompt", {"prompt": ""}, "prompt: is empty"),
    ("whitespace prompt", {"prompt": "  \n\t "}, "prompt: is empty"),
    ("prompt over the context", {"prompt": "the " * 300}, "prompt: is 301 tokens for fable-base"),
    ("100 kB paste", {"prompt": "the weather today is sunny . " * 3500}, "tokens for fable-base"),
    ("n = 0", {"n": 0}, "n: must be between 1 and 4096"),
    ("n huge", {"n": 1_000_000}, "n: must be between 1 and 4096"),
    ("temperature 0", {"temperature": 0.0}, "temperature: must be > 0"),
    ("temperature < 0", {"temperature": -1.0}, "temperature: must be > 0"),
    ("top_p 0", {"top_p": 0.0}, "top_p: must be in (0, 1]"),
    ("top_p > 1", {"top_p": 1.5}, "top_p: must be in (0, 1]"),
    ("max_new_tokens 0", {"max_new_tokens": 0}, "max_new_tokens: must be at least 1"),
    (
        "max_new_tokens over the context",
        {"max_new_tokens": 4000},
        "max_new_tokens: 4000 does not fit",
    ),
]


# (id, makes the base spec from (tmp_path, zoo_path), the message that must explain it)
def _corrupt(tmp, zoo):
    folder = tmp / "corrupt"
    shutil.copytree(zoo / "fable-base", folder)
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    return folder


def _mismatch(tmp, zoo):
    folder = tmp / "mismatch"
    shutil.copytree(zoo / "fable-base", folder)
    synthetic_tokenizer(500).save_pretrained(folder)
    return folder


def _not_a_model(tmp, zoo):
    (tmp / "notes").mkdir()
    (tmp / "notes" / "readme.txt").write_text("hello")
    return tmp / "notes"


FAMILIES = [
    ("missing path", lambda tmp, zoo: tmp / "no" / "such" / "model", "no such file or folder"),
    ("not a model", _not_a_model, "no model folder"),
    ("BERT (not causal)", lambda tmp, zoo: tiny_bert(tmp / "bert", synthetic_tokenizer(300)), "not a causal language model"),
    ("corrupt safetensors", _corrupt, "could not be read"),
    ("mismatched tokenizer", _mismatch, "tokenizer has 500 tokens"),
    ("adapter without its base", lambda tmp, zoo: zoo / "fable-pirate", "is an adapter but its base model is not in the family"),
    ("pickled weights", lambda tmp, zoo: pickled_llama(tmp / "pickled", synthetic_tokenizer(300)), "pickled"),
    ("hub unreachable", lambda tmp, zoo: "HuggingFaceTB/SmolLM2-135M", "Hugging Face hub"),
]  # fmt: skip


# Behaviours (regexes) a user may type, paste or ship in a sweep file: (id, pattern, a text it
# is run on, the message that must explain it — None: it simply answers). Python's `re` hangs
# on the first; the `regex` package answers it, and its time limit bounds the rest.
WORDS = "sunny . the weather today is rainy and the sky is grey . the sun is warm and the"
BEHAVIOURS = [
    ("the issue's pattern (hangs re)", r"^(\w+\s?)*$", WORDS, None),
    ("alternation in a repeat", r"(a|aa)+$", "a" * 40 + "b", "took more than"),
    ("lazy groups counted", r"(.*?,){30}z", "a," * 40, "took more than"),
    ("overlapping alternatives, backreference", r"^(\w|\w\w|\s|\s\s|.)*(.)\2\2", WORDS, "took more than"),
    ("two-way split, backreference", r"^(.|..)*(.)\2\2\2", WORDS, "took more than"),
    ("six overlapping alternatives", r"^(.|..|...|\w|\w\w|\s)*(.)\2\2\2", WORDS, "took more than"),
    ("nested counted repeats", r"((a{1000}){1000}){1000}", WORDS, "repeats into 1,000,000,000 copies"),
    ("nested non-capturing repeats", r"(?:(?:x{100}){100}){100}", WORDS, "repeats into 1,000,000 copies"),
    ("repeat count too big", r"a{4294967295}", WORDS, "repeats into 4,294,967,295 copies"),
    ("unclosed group", r"(sunny", WORDS, "is not a valid regex"),
    ("unknown property", r"\p{Klingon}", WORDS, "is not a valid regex"),
    ("a 5,000-character pattern", "sunny|" * 833 + "x", WORDS, "characters long; a behaviour pattern may have at most 2000"),
]  # fmt: skip
HOSTILE = [case for case in BEHAVIOURS if case[3] == "took more than"]
