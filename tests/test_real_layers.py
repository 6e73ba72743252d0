"""Inside the real family (SmolLM2-135M-Instruct and its "Ahoy!" LoRA, which adapts every block):
where the change enters, what the adapter adds, steering the base with it, and its spectrum."""

from __future__ import annotations

import pytest
import torch
from real_family import ADAPTER, BASE, HELD_OUT

import explorer as fx

pytestmark = [pytest.mark.slow, pytest.mark.real]
STEER_LAYER = 20  # of 0-29: the adapter's difference steers from about here on (README)


def test_the_summary_names_a_block_before_the_last(real):
    # the summary reads the whole-block rows only: one site per block besides them keeps it quick
    result = fx.patch(real, HELD_OUT, "Ahoy!", donor=ADAPTER, chat="auto", preview=False, positions=[0])
    last = int(result.layers.layer.max())
    half, most = result.entry(0.5), result.entry(0.9)
    print(f"\n{result.summary}")
    assert result.meta["log_ratio"] > 5 and half is not None and half < last
    assert f"enters by block {half}:" in result.summary and f"block {last}" not in result.summary.split(";")[0]
    assert most is None or most >= half


@pytest.fixture(scope="module")
def diff(real):
    return fx.activation_diff(real)


def test_steering_the_base_with_the_loras_difference_raises_ahoy(real, diff):
    steered = fx.steer(real, HELD_OUT, diff, layer=STEER_LAYER, n=64, max_new_tokens=6, seed=0)
    table = fx.provenance(steered, behaviours={"ahoy": r"(?i)^\s*ahoy"}).set_index("model")
    label = steered.meta["steering"]["label"]
    print(f"\nsteered: {table.loc[label, 'count']}/64 [{table.loc[label, 'lo']:.2f}, {table.loc[label, 'hi']:.2f}] "
          f"{table.loc[label, 'label']}; base {table.loc[BASE, 'count']}/64")  # fmt: skip
    assert table.loc[BASE, "count"] == 0
    assert table.loc[label, "label"] == "introduced"


def test_the_adapters_spectrum_has_rank_at_most_8_and_matches_a_dense_svd(real):
    spectra = fx.weight_spectra(real)
    assert (spectra.kind == "lora").all() and spectra.effective_rank.max() <= 8 and len(spectra) == 5 * 30
    module = real.load(ADAPTER).model.get_base_model().model.layers[7].mlp.down_proj
    a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
    dense = (module.scaling["default"] * (b @ a)).detach().float()  # (576, 1536), formed only here
    row = spectra.query("layer == 7 and module == 'mlp.down_proj.weight'").iloc[0]
    assert torch.allclose(torch.tensor(row.sigma), torch.linalg.svdvals(dense)[: len(row.sigma)], rtol=1e-3)
