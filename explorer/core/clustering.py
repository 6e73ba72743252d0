"""Answer clusters: group a model's responses so that spread can be counted.

A clusterer maps a list of responses to one label per response; labels are readable texts (the
cluster's representative), so the same answer from two models gets the same label. Users may
pass any callable with that signature.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

Clusterer = Callable[[Sequence[str]], list[str]]

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Case-folded, punctuation removed, white space collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def by_normalised_text(texts: Sequence[str]) -> list[str]:
    return [normalise(t) or "(empty)" for t in texts]


def by_first_words(k: int) -> Clusterer:
    """Responses that start with the same `k` normalised words share a cluster."""
    if k < 1:
        raise ValueError(f"k: must be at least 1, got {k}")

    def cluster(texts: Sequence[str]) -> list[str]:
        return [" ".join(normalise(t).split()[:k]) or "(empty)" for t in texts]

    cluster.__name__ = f"first_{k}_words"
    return cluster


def by_tfidf(threshold: float = 0.5) -> Clusterer:
    """Responses whose TF-IDF vectors (word uni- and bigrams) have cosine similarity at least
    `threshold` to a cluster's first member join it (greedy, in order of frequency)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold: must be in (0, 1], got {threshold}")

    def cluster(texts: Sequence[str]) -> list[str]:
        import numpy as np
        from sklearn.feature_extraction.text import TfidfVectorizer

        norm = by_normalised_text(texts)
        uniq = [t for t, _ in Counter(norm).most_common()]
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"\S+")
        vectors = vectorizer.fit_transform(uniq).toarray()  # (unique, features), rows L2-normalised
        rep: list[int] = []
        label_of: dict[str, str] = {}
        for i, text in enumerate(uniq):
            sims = vectors[rep] @ vectors[i] if rep else np.zeros(0)
            j = int(np.argmax(sims)) if len(sims) else -1
            if j >= 0 and sims[j] >= threshold:
                label_of[text] = uniq[rep[j]]
            else:
                rep.append(i)
                label_of[text] = text
        return [label_of[t] for t in norm]

    cluster.__name__ = f"tfidf_{threshold}"
    return cluster


CLUSTERERS: dict[str, Clusterer] = {
    "normalised": by_normalised_text,
    "first_word": by_first_words(1),
    "first_2_words": by_first_words(2),
    "tfidf": by_tfidf(),
}


def get_clusterer(spec: str | Clusterer) -> Clusterer:
    if callable(spec):
        return spec
    if spec not in CLUSTERERS:
        raise ValueError(f"clusterer: one of {', '.join(CLUSTERERS)} or a callable, got {spec!r}")
    return CLUSTERERS[spec]
