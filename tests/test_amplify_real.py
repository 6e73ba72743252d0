"""Amplified sampling on the real-model lane: SmolLM2-135M-Instruct (GGUF) and its LoRA that
says "Ahoy!" first. The base's logits come from the adapter's own weights with the adapter off."""

from __future__ import annotations

import dataclasses

import pytest
from real_family import ADAPTER, BASE, HELD_OUT

import explorer as fx
from explorer.core.amplify import mixer_for
from explorer.core.local import sample_local
from explorer.core.params import SamplingParams

pytestmark = [pytest.mark.slow, pytest.mark.real]


def test_the_ends_of_the_real_path_are_the_models_own_samples(real):
    params = SamplingParams(n=4, max_new_tokens=4, seed=1)
    own = fx.sample(real, HELD_OUT, **params.to_dict())
    base, desc = real.load(BASE), real.load(ADAPTER)
    for lam, label in [(0, BASE), (1, ADAPTER)]:
        named = desc.named(dataclasses.replace(desc.ref, label=label))
        mixed = sample_local(named, HELD_OUT, params, 256, None, None, mixer=mixer_for(base, desc, HELD_OUT, params, lam))
        assert [r["token_ids"] for r in mixed.rows] == own.df[own.df["model"] == label]["token_ids"].tolist()
    amp = fx.amplify(real, HELD_OUT, ADAPTER, lambdas=(0.5, 2), **params.to_dict())
    texts = amp.df.groupby("lam")["text"].apply(list)
    print("\n" + "\n".join(f"λ={lam:g}: {t}" for lam, t in texts.items()))
    assert all(t.lower().startswith("ahoy") for t in texts[2.0])  # amplified: the adapter's greeting, always
