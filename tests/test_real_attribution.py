"""Attribution on the real SmolLM2-135M (the GGUF base, the chat template, its own 24-token
answer): the default integrated gradients converge, and faithfulness reads the user's words."""

from __future__ import annotations

import pytest
import torch
from real_family import BASE

import explorer as fx
from explorer.core.attribution.baselines import baseline_embeds
from explorer.core.attribution.gradients import embed
from explorer.core.attribution.ig import score_change
from explorer.core.attribution.problem import build_problem

pytestmark = [pytest.mark.slow, pytest.mark.real]
PROMPT = "Tell me about the moon."
# the base's own answer (seed 0, temperature 0.7), 24 tokens; benchmarks/bench_attribution.py times it
RESPONSE = "The moon - a celestial body that holds a special place in the tapestry of human culture. The moon is not just a"


def test_default_integrated_gradients_converge_on_a_real_chat_response(real):
    """The straight path left 24 of 24 targets unconverged here (gaps 87–96% at 12 nodes per
    target, 37% median at 33); the default sequential path is exact per leg. The flags are
    counted, and completeness is checked against two forward passes of embeddings (not the
    ids the path ran on)."""
    attr = fx.attribute(real, PROMPT, RESPONSE, method="integrated_gradients", models=[BASE], chat="auto")
    extra = attr.meta["extra"][BASE]
    converged = extra["converged"]
    assert len(converged) == 24 and sum(converged) >= 0.9 * len(converged)
    assert attr.unconverged() == 0 and "not converged" not in attr.summary()
    p = build_problem(real.load(BASE), PROMPT, RESPONSE, "auto")
    with torch.no_grad():
        delta = score_change(p, embed(p), baseline_embeds(p, "eos"))  # (targets,)
    sums = torch.tensor(attr.matrix(BASE).sum(axis=1).to_numpy(), dtype=torch.float32)
    assert torch.allclose(sums, delta, atol=1e-3 * float(delta.abs().max()) + 1e-3)
    faith = attr.faithfulness(real).df.iloc[0]
    assert faith["words"] == 6  # "Tell", " me", " about", " the", " moon", "." — not the template's tokens
    assert faith["drop"] != 0 and -1.5 < faith["faithfulness"] < 1.5
