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
    ids = [int(i) for i in ids]
    if not ids:
        return []
    if hasattr(tokenizer, "token_texts"):  # a tokenizer that knows better (a server's)
        return list(tokenizer.token_texts(ids))
    prefixes = tokenizer.batch_decode(
        [ids[: i + 1] for i in range(len(ids))],
        skip_special_tokens=False,
        clean_up_tokenization_spaces=False,
    )
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
