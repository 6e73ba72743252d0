"""This round's features on every architecture of the matrix (tests/architectures.py): Discover,
amplified sampling, activation differences and steering, weight spectra — each on tiny random
families (a base, a LoRA, a copy with only its last block trained), checked against what holds
by construction rather than against the zoo's trained truths."""

from __future__ import annotations

import math

import pytest
import test_architectures
import torch
from architectures import PROMPT
from test_architectures import prompt_ids

import explorer as fx

pytestmark = pytest.mark.slow
arch, one_thread = test_architectures.arch, test_architectures.one_thread  # the matrix's fixtures


def test_discover_compares_every_descendant(arch):
    """One prompt, no confirmation: a row per descendant, each with a finite KL above 0 (both
    descendants' weights moved)."""
    found = fx.discover(arch.family, [PROMPT], n=3, n_confirm=0, max_new_tokens=4)
    df = found.df.set_index("model")
    assert set(df.index) == {arch.lora, arch.tuned}
    for label in (arch.lora, arch.tuned):
        kl = float(df.loc[label, "kl_mean"])
        assert math.isfinite(kl) and kl > 0, label


def test_the_ends_of_the_amplified_path_are_the_models_own_samples(arch):
    """λ = 0 samples as the base and λ = 1 as the descendant, token for token (the lock-step
    mixer runs the base beside the descendant with its own cache, whatever the cache's kind)."""
    for descendant in (arch.lora, arch.tuned):
        own = fx.sample(arch.family, PROMPT, models=[arch.base, descendant], n=3, max_new_tokens=4, seed=3)
        amp = fx.amplify(arch.family, PROMPT, descendant, lambdas=(0, 1, 2), n=3, max_new_tokens=4, seed=3)
        for lam, label in [(0, arch.base), (1, descendant)]:
            expected = own.df[own.df["model"] == label]["token_ids"].tolist()
            assert amp.df[amp.df["lam"] == lam]["token_ids"].tolist() == expected, (descendant, lam)


def test_steering_adds_the_difference_to_a_block_and_samples_the_base(arch):
    """The tuned copy's difference is 0 before its last block. The steering hook adds a vector to
    a block's output whatever that output's type: 0 leaves the logits as they were, the copy's
    difference at its last block moves them; `fx.steer` samples the base under a steered label."""
    from explorer.core.layers.anatomy import anatomy
    from explorer.core.steering import steering

    diff = fx.activation_diff(arch.family, models=[arch.tuned])
    n = arch.n_layers
    assert diff.vector(arch.tuned, 0).abs().max() < 1e-5  # block 0 untouched by the edit
    vector = diff.vector(arch.tuned, n - 1)  # (hidden,)
    assert vector.abs().max() > 1e-4
    base = arch.member(arch.base)
    ids = torch.tensor([prompt_ids(base)])  # (1, seq)
    block = anatomy(base).blocks[n - 1]
    with torch.no_grad():
        plain = base.model(input_ids=ids).logits
        with steering(block, torch.zeros_like(vector)):
            same = base.model(input_ids=ids).logits
        with steering(block, 50 * vector):
            moved = base.model(input_ids=ids).logits
    assert torch.equal(plain, same) and (moved - plain).abs().max() > 1e-3
    steered = fx.steer(arch.family, PROMPT, diff, model=arch.tuned, n=3, max_new_tokens=3, seed=1)
    assert (steered.df["model"].str.contains("Δ")).sum() == 3


def test_weight_spectra_see_the_loras_rank_and_only_the_last_block_of_the_copy(arch):
    spectra = fx.weight_spectra(arch.family)
    lora = spectra[spectra["model"] == arch.lora]
    assert len(lora) and (lora["kind"] == "lora").all()
    assert (lora["rank_bound"] <= 4).all() and (lora["effective_rank"] <= 4 + 1e-6).all()  # r = 4
    from explorer.core.layers.weights import lora_layers

    adapted = lora_layers(arch.member(arch.lora))
    for row in lora.itertuples():  # σ from two thin QRs equals the dense SVD of peft's own ΔW
        (name,) = [n for n in adapted if n.endswith(row.module) and _block(n) == row.layer]
        delta = adapted[name].get_delta_weight(adapted[name].active_adapters[0]).float()
        dense = torch.linalg.svdvals(delta)[: len(row.sigma)]
        assert torch.allclose(torch.tensor(row.sigma), dense, rtol=1e-4, atol=1e-6), name
    tuned = spectra[spectra["model"] == arch.tuned]
    assert len(tuned) and set(tuned["layer"]) == {arch.n_layers - 1}


def _block(name: str) -> int:
    """The block index in a weight's name (-1 outside the blocks)."""
    import re

    found = re.search(r"\.(\d+)\.", name)
    return int(found.group(1)) if found else -1
