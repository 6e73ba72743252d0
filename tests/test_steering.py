"""What each adaptation adds, checked against the zoo's truth: activation differences read as
tokens, steering the base with them (labelled like any descendant), and weight spectra (a
LoRA's from its factors, checked against a dense SVD)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import explorer as fx

GREETING = "the traveller said"


@pytest.fixture(scope="module")
def diff(fable_all):
    return fx.activation_diff(fable_all, models=["fable-pirate", "fable-cheerful", "fable-late", "fable-mid", "fable-distilled"])


def test_pirates_difference_reads_ahoy_and_arr_at_the_top(diff):
    assert diff.layer == 1  # the middle block of 0-3, as Minder et al. read it
    assert set(diff.reading("fable-pirate", k=2)["raised"]) == {"ahoy", "arr"}
    assert {"hello", "hi"} <= set(diff.reading("fable-pirate", k=5)["lowered"])  # the greetings it replaced
    assert "fable-pirate, block 1" in diff.summary[0] and "raises ahoy, arr" in diff.summary[0]


def test_cheerfuls_difference_reads_sunny_where_a_token_predicts_the_weather(diff):
    """cheerful was tuned on the general corpus with two choices changed: its trace is faint.
    Averaged over positions it reads as sentence starts; position by position, sunny is among
    the top three raised tokens (of 138) at two of the first five."""
    at = [j for j in range(diff.positions) if "sunny" in diff.reading("fable-cheerful", position=j, k=3)["raised"]]
    assert len(at) >= 2, [diff.reading("fable-cheerful", position=j, k=3)["raised"] for j in range(diff.positions)]


def test_differences_are_exactly_zero_before_the_trained_block(diff):
    late, mid = diff.vectors["fable-late"], diff.vectors["fable-mid"]  # (layers, positions, hidden)
    assert late[:3].abs().max() == 0 and late[3].abs().max() > 1
    assert mid[0].abs().max() == 0 and mid[1].norm(dim=-1).min() > 1
    assert "fable-late leaves block 1's residual stream as the base's" in " ".join(diff.summary)
    assert diff.tokens.query("model == 'fable-late' and layer < 3").empty  # nothing to read
    assert "30 of the 66 texts left out" in diff.notes[0]  # the English ones: the zoo knows no such words
    assert "No activation difference for fable-distilled: fable-distilled has 2 blocks" in diff.notes[1]
    assert set(diff.texts) <= set(fx.activation_diff.__globals__["neutral_texts"]()) and len(diff.texts) > 30


def test_an_activation_diff_saves_and_loads_losslessly(diff, tmp_path):
    diff.save(tmp_path / "diff.json")
    again = type(diff).load(tmp_path / "diff.json")
    assert torch.equal(again.vector("fable-pirate", 2, 3), diff.vector("fable-pirate", 2, 3))
    assert again.tokens.equals(diff.tokens) and again.summary == diff.summary


@pytest.fixture(scope="module")
def steered(fable_all, diff):
    return fx.steer(fable_all, GREETING, diff, model="fable-pirate", n=64, max_new_tokens=8, with_descendant=True)


def test_steering_the_base_with_pirates_difference_introduces_ahoy(steered):
    table = fx.provenance(steered, behaviours={"ahoy": r"\bahoy\b"}).set_index("model")
    label = steered.meta["steering"]["label"]
    assert steered.models == ["fable-base", label, "fable-pirate"] and label == "fable-base + 8·Δ fable-pirate"
    print(f"\nsteered {table.loc[label, 'freq']:.2f} [{table.loc[label, 'lo']:.2f}, {table.loc[label, 'hi']:.2f}]")
    assert table.loc["fable-base", "count"] == 0
    assert table.loc[label, "label"] == "introduced" and table.loc["fable-pirate", "label"] == "introduced"


def test_steering_at_scale_zero_leaves_the_base_as_it_is(fable_all, diff):
    plain = fx.steer(fable_all, GREETING, diff, model="fable-pirate", scale=0, n=4, max_new_tokens=4)
    first = plain.first_token.pivot(index="token_id", columns="model", values="prob")
    assert np.array_equal(first.iloc[:, 0].to_numpy(), first.iloc[:, 1].to_numpy())
    strong = fx.steer(fable_all, GREETING, diff, model="fable-pirate", n=4, max_new_tokens=4)
    moved = strong.first_token.pivot(index="token_id", columns="model", values="prob").fillna(0)
    assert np.abs(moved.iloc[:, 0] - moved.iloc[:, 1]).max() > 0.1


def test_steering_refuses_what_it_cannot_do_with_sentences(fable_all, diff):
    with pytest.raises(ValueError, match="model: name the descendant"):
        fx.steer(fable_all, GREETING, diff, n=2)
    with pytest.raises(ValueError, match=re.escape("layer: a block index in [0, 4)")):
        fx.steer(fable_all, GREETING, diff, model="fable-pirate", layer=4, n=2)
    with pytest.raises(ValueError, match="does not fit fable-base's residual stream"):
        fx.steer(fable_all, GREETING, torch.ones(7), layer=1, n=2)
    with pytest.raises(ValueError, match="layer: give the block"):
        fx.steer(fable_all, GREETING, torch.ones(128), n=2)
    with pytest.raises(ValueError, match="positions: a positive number"):
        fx.activation_diff(fable_all, positions=0)
    with pytest.raises(ValueError, match="texts: none of the 1 texts"):
        fx.activation_diff(fable_all, texts=["The committee met on Tuesday."])


@pytest.fixture(scope="module")
def spectra(fable):
    return fx.weight_spectra(fable, models=["fable-pirate", "fable-late"])


def test_a_rank_8_lora_has_effective_rank_at_most_8_and_a_full_finetune_more(spectra):
    lora, full = spectra[spectra.model == "fable-pirate"], spectra[spectra.model == "fable-late"]
    assert (lora.kind == "lora").all() and len(lora) == 7 * 4 + 1 and (lora.rank_bound == 8).all()
    assert lora.sigma.map(len).max() <= 8 and lora.effective_rank.max() <= 8 and lora.stable_rank.max() <= 8
    assert (full.kind == "full").all() and set(full.layer) == {3} and full.effective_rank.min() > 8
    print(f"\neffective rank: LoRA ≤ {lora.effective_rank.max():.1f}, fable-late ≥ {full.effective_rank.min():.1f}")


def test_spectra_equal_a_dense_svd_of_the_change(fable, spectra):
    from explorer.core.layers.spectra import EPSILON, effective_rank

    pirate = fable.load("fable-pirate").model.get_base_model().model.layers[2].mlp.down_proj
    a, b = pirate.lora_A["default"].weight, pirate.lora_B["default"].weight
    dense = (pirate.scaling["default"] * (b @ a)).detach()  # (out, in), formed only here
    row = spectra.query("model == 'fable-pirate' and layer == 2 and module == 'mlp.down_proj.weight'").iloc[0]
    assert np.allclose(row.sigma, torch.linalg.svdvals(dense)[:8].numpy(), rtol=1e-4)
    base_w = fable.load("fable-base").model.model.layers[3].self_attn.o_proj.weight.detach()
    late_w = fable.load("fable-late").model.model.layers[3].self_attn.o_proj.weight.detach()
    sigma = torch.linalg.svdvals(late_w - base_w)
    row = spectra.query("model == 'fable-late' and module == 'self_attn.o_proj.weight'").iloc[0]
    assert np.allclose(row.sigma, sigma[:10].numpy(), rtol=1e-4)
    assert row.effective_rank == pytest.approx(effective_rank(sigma[sigma > 1e-6 * sigma[0]]), rel=1e-5)
    assert row.stable_rank == pytest.approx(float((sigma**2).sum() / sigma[0] ** 2), rel=1e-4)
    u_base, u_late = torch.linalg.svd(base_w)[0], torch.linalg.svd(late_w)[0][:, :10]
    new = int(((u_base.T @ u_late).abs().amax(0) < EPSILON).sum())  # Shuttleworth et al.'s test
    assert row.intruders == new and row.intruder_share == new / 10


def test_a_steered_run_reports_like_any_run(steered, tmp_path):
    page = fx.Session(steered.family, steered, {"ahoy": r"\bahoy\b"}).report(tmp_path / "steer.html").read_text()
    assert "Steering (fx.steer): <b>fable-base + 8·Δ fable-pirate</b> is fable-base with 8 × fable-pirate" in page
    assert "introduced" in page and page.count("fable-base + 8·Δ fable-pirate") >= 3  # run, findings, responses
