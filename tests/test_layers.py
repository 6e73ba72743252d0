"""Inside the family, checked against known truth: `fable-late` was trained in its last block only
(every other weight is the base's, bit for bit), `fable-pirate` is a LoRA adapter on known modules.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import explorer as fx
from explorer.zoo.build import LORA_TARGETS

EDIT = ("the capital of sylvane is", " tirwick .")  # fable-late's swapped capital
LAST = 3  # fable-base has blocks 0–3


@pytest.fixture(scope="module")
def late(fable):
    return fx.patch(fable, *EDIT, donor="fable-late")


def test_weight_diff_of_late_is_zero_outside_its_last_block(fable):
    diff = fx.weight_diff(fable)
    late = diff[diff.model == "fable-late"]
    inside = late[late.layer == LAST]
    assert (late[late.layer != LAST].relative_change == 0).all()
    assert (inside.relative_change > 1e-3).all() and len(inside) == 9  # 7 matrices, 2 norms
    assert "fable-distilled" not in set(diff.model)
    assert "another shape" in " ".join(diff.attrs["notes"])


def test_weight_diff_of_pirate_is_nonzero_exactly_on_its_adapter_modules(fable):
    diff = fx.weight_diff(fable, models=["fable-pirate"])
    targeted = diff.module.str.split(".").str[-2].isin(LORA_TARGETS)
    assert (diff[targeted].kind == "lora").all() and (diff[~targeted].kind == "full").all()
    assert (diff[targeted].relative_change > 1e-4).all()
    assert (diff[~targeted].relative_change == 0).all()
    assert targeted.sum() == 7 * 4 + 1  # seven projections in four blocks, and the head


def test_lora_change_equals_the_merged_difference(fable):
    """The low-rank norm (never merged) equals ‖merged − base‖ computed the slow way."""
    member = fable.load("fable-pirate")
    diff = fx.weight_diff(fable, models=["fable-pirate"]).set_index(["layer", "module"])
    module = member.model.get_base_model().model.layers[2].mlp.down_proj
    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
    merged = module.scaling["default"] * (b @ a)  # (out, in)
    got = diff.loc[(2, "mlp.down_proj.weight"), "change_norm"]
    assert got == pytest.approx(float(merged.norm()), rel=1e-5)


def test_weight_diff_refuses_a_distilled_student_alone_with_a_sentence(fable):
    with pytest.raises(ValueError, match="2 blocks of width 64 and the base 4 of width 128"):
        fx.weight_diff(fable, models=["fable-distilled"])


def test_patching_the_last_block_recovers_the_edit_and_the_first_recovers_nothing(late):
    whole = late.layers.set_index("layer")
    assert late.meta["log_ratio"] > 5  # the edit moved this answer by many nats
    assert whole.loc[LAST, "recovered"] >= 0.9
    assert abs(whole.loc[0, "recovered"]) <= 0.01
    sites = late.df[late.df.layer < LAST]
    assert sites.effect.abs().max() == 0  # before the edited block the streams are identical


def test_the_summary_of_a_last_block_change_says_no_earlier_block_carries_it(late):
    assert late.entry(0.5) == LAST == late.entry(0.9)
    assert late.summary.startswith("fable-late's change (+1")
    assert "enters in the last block (3): no earlier block's output carries a noticeable part of it (at most 0%)" in late.summary


MID_EDIT = ("the capital of orsinia is", " pelbridge .")  # fable-mid's swapped capital, learnt in block 1


@pytest.fixture(scope="module")
def mid(fable_all):
    return fx.patch(fable_all, *MID_EDIT, donor="fable-mid")


def test_fable_mid_patching_block_0_carries_nothing_and_block_1_all_of_it(mid):
    whole = mid.layers.set_index("layer")
    assert mid.meta["log_ratio"] > 5
    assert whole.loc[0, "effect"] == 0 and mid.df[mid.df.layer == 0].effect.abs().max() == 0
    assert whole.loc[1, "recovered"] >= 0.9
    assert mid.entry(0.5) == 1 == mid.entry(0.9)
    assert "fable-mid's change" in mid.summary and "enters by block 1" in mid.summary and "90% by block 1" in mid.summary


def test_fable_mid_lens_parts_from_the_base_at_block_1_and_its_weights_moved_only_there(fable_all):
    from explorer.core.layers.lens import parting

    lens = fx.layer_lens(fable_all, *MID_EDIT, models=["fable-base", "fable-mid"])
    mid = lens[lens.model == "fable-mid"]
    assert (mid[mid.layer == 0].kl_to_base == 0).all() and mid[mid.layer == 1].kl_to_base.max() > 1
    assert parting(lens)[0].startswith("fable-mid's lens parts from the base's at block 1 (KL exactly 0 before it)")
    diff = fx.weight_diff(fable_all, models=["fable-mid"])
    assert set(diff[diff.relative_change > 0].layer) == {1}
    assert (diff[diff.layer == 1].relative_change > 1e-3).all()


def test_the_summary_of_an_adapter_on_every_block_names_a_block_before_the_last(fable):
    """fable-pirate adapts every block (and its head): its change builds up, and the sentence
    names the first block carrying half of it, never the last block's share."""
    result = fx.patch(fable, "the traveller said", " ahoy to the fox .", donor="fable-pirate")
    shares = result.layers.set_index("layer")["recovered"]
    half = result.entry(0.5)
    assert half is not None and half < LAST and shares[half] >= 0.5 > shares[half - 1]
    assert f"enters by block {half}:" in result.summary and f"{shares[half]:.0%}" in result.summary
    assert "block 3" not in result.summary


def test_patching_the_last_block_everywhere_reproduces_the_donors_logprobs(late):
    assert late.meta["shared_head"]
    last = late.layers.set_index("layer").loc[LAST]
    assert last["logprob"] == pytest.approx(late.meta["donor_logprob"], abs=1e-5)


def test_patching_with_the_receiver_itself_changes_nothing(fable):
    for site in ("block", "attention", "mlp"):
        same = fx.patch(fable, *EDIT, donor="fable-cheerful", receiver="fable-cheerful", site=site)
        assert same.df.effect.abs().max() == 0 and same.layers.effect.abs().max() == 0
        assert same.meta["log_ratio"] == 0 and np.isnan(same.layers.recovered).all()


def test_batched_sites_equal_one_pass_per_site(fable):
    """Each batched row equals the same patch run alone (the per-site loop of the benchmark)."""
    from explorer.core.attribution.problem import build_problem
    from explorer.core.layers.anatomy import anatomy, capture
    from explorer.core.layers.sites import patched_passes

    donor, receiver = fable.load("fable-pirate"), fable.load("fable-base")
    problem = build_problem(receiver, *EDIT, "never")
    acts = capture(donor, problem.ids, "mlp")  # batch 1: the batched rows match to float precision
    body = anatomy(receiver)
    sites = [(1, 2), (2, 5), (3, 4), (0, -1)]
    batched = patched_passes(receiver, body, "mlp", problem.ids, problem.start, acts, sites)[0]
    alone = torch.cat([patched_passes(receiver, body, "mlp", problem.ids, problem.start, acts, [s])[0] for s in sites])
    assert torch.allclose(batched, alone, atol=1e-5) and (batched != batched[0]).any()


def test_the_preview_agrees_with_exact_patching_and_says_how_well(fable):
    result = fx.patch(fable, "the weather today is", " sunny .", donor="fable-cheerful")
    agreement = result.meta["preview"]
    assert agreement["pearson"] > 0.5  # first-order estimates track the exact effects
    assert np.isfinite(result.df.preview).all() and agreement["max_abs_error"] >= 0


def test_patching_refuses_other_shapes_with_a_sentence(fable):
    with pytest.raises(ValueError, match="fable-distilled has 2 blocks and fable-base 4"):
        fx.patch(fable, *EDIT, donor="fable-distilled")
    with pytest.raises(ValueError, match="site: one of block, attention, mlp"):
        fx.patch(fable, *EDIT, donor="fable-late", site="head")


def test_lens_kl_is_zero_before_the_edited_block_and_large_in_it(fable):
    lens = fx.layer_lens(fable, *EDIT)
    late = lens[lens.model == "fable-late"]
    assert (late[late.layer < LAST].kl_to_base == 0).all()
    assert late[late.layer == LAST].kl_to_base.max() > 5
    assert (lens[lens.model == "fable-base"].kl_to_base == 0).all()
    assert lens[lens.model == "fable-distilled"].kl_to_base.isna().all()
    assert "fable-distilled: has 2 blocks" in lens.attrs["notes"][0]


def test_the_last_layer_of_the_lens_is_the_models_own_prediction(fable):
    lens = fx.layer_lens(fable, *EDIT, models=["fable-pirate"])
    member = fable.load("fable-pirate")
    ids = member.tokenizer(EDIT[0] + EDIT[1], return_tensors="pt")["input_ids"]  # (1, seq)
    start = len(member.tokenizer(EDIT[0])["input_ids"])
    with torch.no_grad():
        logprobs = torch.log_softmax(member.model(ids).logits[0].float(), -1)  # (seq, vocab)
    own = logprobs[start - 1 : -1].gather(-1, ids[0, start:, None])[:, 0]
    last = lens[lens.layer == LAST].sort_values("position")
    assert np.allclose(last.logprob, own.numpy(), atol=1e-4)
    assert [t.strip() for t in last.token] == ["tirwick", "."]


def test_shared_head_reproduces_donor_on_a_perturbed_copy(zoo_path, tmp_path):
    """A descendant with blocks 1–2 perturbed: patching block 2 or 3 everywhere gives the donor's
    log-probs exactly, block 0 gives the receiver's."""
    folder = tmp_path / "perturbed"
    shutil.copytree(zoo_path / "fable-base", folder)
    weights = load_file(folder / "model.safetensors")
    gen = torch.Generator().manual_seed(0)
    for name, w in weights.items():
        if ".layers.1." in name or ".layers.2." in name:
            weights[name] = w + 0.05 * torch.randn(w.shape, generator=gen)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    family = fx.load_family(zoo_path / "fable-base", descendants=[folder])
    result = fx.patch(family, "the weather today is", " rainy .", donor="perturbed")
    whole = result.layers.set_index("layer")
    for layer in (2, 3):
        assert whole.loc[layer, "logprob"] == pytest.approx(result.meta["donor_logprob"], abs=1e-4)
    assert abs(whole.loc[0, "effect"]) <= 1e-5  # block 0 is the base's
