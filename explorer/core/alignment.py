"""Word alignment: attribution matrices of models that tokenize differently, made comparable.

Members with different tokenizers split the same text into different tokens, so their
(target token × source token) matrices do not line up. Every token is mapped, through the
tokenizer's character offsets, to the word of the user's text it covers (whitespace-separated
words of the prompt, then of the response); special and chat-template tokens form one unit of
their own. Scores are then summed over a word's tokens for additive methods (a word's log-prob
is the sum of its tokens') and maxed for norm-based ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

WORD = re.compile(r"\S+")
SPECIAL = "⟨special⟩"


@dataclass(frozen=True)
class WordUnits:
    """Unit 0 is special/template tokens; then the prompt's words; then the response's."""

    names: list[str]
    n_prompt: int  # number of prompt words

    @property
    def first_response(self) -> int:
        return 1 + self.n_prompt

    def part(self, unit: int) -> str:
        return "response" if unit >= self.first_response else "prompt"


def word_units(prompt: str, response: str) -> WordUnits:
    prompt_words = WORD.findall(prompt)
    return WordUnits([SPECIAL, *prompt_words, *WORD.findall(response)], len(prompt_words))


def char_units(text: str, first: int) -> np.ndarray:
    """Unit per character of `text` (-1 for whitespace), words numbered from `first`."""
    units = np.full(len(text), -1)
    for i, m in enumerate(WORD.finditer(text)):
        units[m.start() : m.end()] = first + i
    return units


def span_unit(units: np.ndarray, start: int, end: int) -> int:
    """The first word a character span touches, or 0 (the special unit) for none."""
    inside = units[max(0, start) : max(0, end)]
    hits = inside[inside >= 0]
    return int(hits[0]) if len(hits) else 0


def token_units(
    tokenizer, model_text: str, prompt: str, response: str, n_prefix: int
) -> np.ndarray:
    """(seq,) the unit of every position of (model_text tokens + response tokens).

    Raises ValueError for tokenizers without character offsets (slow tokenizers)."""
    try:
        pre = tokenizer(model_text, add_special_tokens=True, return_offsets_mapping=True)
        cont = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError) as err:
        raise ValueError(
            "align: word alignment needs a fast tokenizer (character offsets)"
        ) from err
    if "offset_mapping" not in pre or "offset_mapping" not in cont:  # a server's tokenizer: ids only
        raise ValueError("align: word alignment needs a fast tokenizer (character offsets)")
    if len(pre["input_ids"]) != n_prefix:
        raise ValueError("align: the tokenizer's offsets do not match its tokens")
    words = word_units(prompt, response)
    start = model_text.find(prompt)  # the prompt inside a chat template (0 without one)
    prompt_chars = char_units(prompt, 1)
    response_chars = char_units(response, words.first_response)
    units = [
        span_unit(prompt_chars, a - start, b - start) if start >= 0 and b > a else 0
        for a, b in pre["offset_mapping"]
    ]
    units += [span_unit(response_chars, a, b) if b > a else 0 for a, b in cont["offset_mapping"]]
    return np.array(units)


def splits_words(tokenizer, text: str) -> bool:
    """Whether the tokenizer cuts some whitespace-separated word of `text` into several tokens
    (subword tokenizers do; the fable zoo's word-level one does not). A tokenizer without
    character offsets (a server's) cannot be mapped onto words, so it keeps its tokens."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError):
        return False
    if "offset_mapping" not in enc:
        return False
    units = char_units(text, 0)
    words = [span_unit(units, a, b) for a, b in enc["offset_mapping"] if b > a]
    return len(words) != len(set(words))


def default_alignment(family, labels: list[str], text: str) -> str:
    """"words" when the members tokenize differently or a tokenizer cuts a word of `text` into
    pieces (a person reads words, not "▁bright" and "ness"), else "tokens"."""
    if not family.subset([m for m in labels if m != family.base.label]).shared_tokenizer:
        return "words"
    return "words" if any(splits_words(family.tokenizer(m), text) for m in labels) else "tokens"


def aggregate(
    scores: torch.Tensor,
    target_units: np.ndarray,
    source_units: np.ndarray,
    n_units: int,
    additive: bool,
) -> np.ndarray:
    """(targets, sources) token scores → (units, units) word scores: sum or max over tokens.
    Rows and columns of units that no token maps to are 0."""
    s = scores.detach().float().cpu().numpy()  # (targets, sources)
    if additive:
        rows = np.zeros((n_units, s.shape[0]))
        rows[target_units, np.arange(s.shape[0])] = 1
        cols = np.zeros((s.shape[1], n_units))
        cols[np.arange(s.shape[1]), source_units] = 1
        return rows @ s @ cols  # (units, units)
    out = np.zeros((n_units, n_units))
    for t, tu in enumerate(target_units):
        np.maximum.at(out[tu], source_units, s[t])
    return out
