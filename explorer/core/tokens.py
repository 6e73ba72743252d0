"""Tokens as the text they stand for.

Tokenizers name their tokens with internal pieces — byte-level BPE writes a leading space as
`Ġ`, SentencePiece as `▁`, and bytes of a character it splits as `<0xE2>` — which mean nothing
to a reader. Every table and chart shows instead the text each token adds to the decoded
string: found by decoding growing prefixes (the tokenizer's own decoder, so every convention is
handled by the library that defines it). A character split over several byte tokens is shown on
each of them, so no cell is blank; a newline shows as `↵` and a tab as `⇥`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

REPLACEMENT = "\ufffd"  # what a decoder writes for an incomplete UTF-8 sequence
VISIBLE = str.maketrans({"\n": "↵", "\r": "↵", "\t": "⇥"})
RAW_MARKERS = ("Ġ", "▁", "Ċ", "<0x")  # pieces that must never reach a person


def token_texts(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The text each of `ids` adds when they are decoded in order (special tokens included).

    Tokens that end inside a character (their decoded prefix ends in U+FFFD) are grouped with
    the tokens that complete it, and each token of the group shows the group's text."""
    return token_texts_many(tokenizer, [ids])[0]


def token_texts_many(tokenizer: Any, sequences: Sequence[Sequence[int]]) -> list[list[str]]:
    """`token_texts` of several sequences, with one call to the tokenizer's batch decoder."""
    sequences = [[int(i) for i in ids] for ids in sequences]
    if hasattr(tokenizer, "token_texts"):  # a tokenizer that knows better (a server's)
        return [list(tokenizer.token_texts(ids)) if ids else [] for ids in sequences]
    prefixes = [ids[: i + 1] for ids in sequences for i in range(len(ids))]
    decoded = decode_all(tokenizer, prefixes) if prefixes else []
    out, start = [], 0
    for ids in sequences:
        out.append(_split(tokenizer, ids, decoded[start : start + len(ids)]))
        start += len(ids)
    return out


def decode_all(tokenizer: Any, rows: list[list[int]]) -> list[str]:
    """Each row decoded with special tokens and without clean-up; through the Rust tokenizer in
    one call when there is one (transformers' `batch_decode` costs a Python call per row)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.decode_batch(rows, skip_special_tokens=False)
    return tokenizer.batch_decode(rows, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _split(tokenizer: Any, ids: list[int], prefixes: list[str]) -> list[str]:
    texts: list[str] = []
    group, done = 0, ""  # tokens waiting for their character; text decoded before the group
    for i, decoded in enumerate(prefixes):
        group += 1
        if decoded.endswith(REPLACEMENT) and i < len(ids) - 1:
            continue  # the character is completed by a later token
        if decoded.startswith(done):
            added = decoded[len(done) :] or _piece(tokenizer, ids[i])
            texts += [added] * group
        else:  # a decoder that rewrites earlier text (not prefix-stable): each token alone
            texts += [_piece(tokenizer, ids[j]) for j in range(i + 1 - group, i + 1)]
        group, done = 0, decoded
    return texts


def _piece(tokenizer: Any, token_id: int) -> str:
    """One token decoded on its own (the fallback for decoders that are not prefix-stable)."""
    return tokenizer.decode([token_id], skip_special_tokens=False) or f"#{token_id}"


def display(text: str) -> str:
    """A token's text for a cell or an axis label: line breaks and tabs as visible marks."""
    return text.translate(VISIBLE) if text else "∅"


def display_tokens(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    return [display(t) for t in token_texts(tokenizer, ids)]


def looks_raw(text: str) -> bool:
    """Whether a shown string still carries a tokenizer's internal markers."""
    return any(marker in text for marker in RAW_MARKERS)
