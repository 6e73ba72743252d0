"""The app on the real family (widget test): load it by its folder, resample, attribute, and
read everything it shows: no tokenizer piece (Ġ, ▁, <0x..>) reaches a person."""

from __future__ import annotations

import pytest
from real_family import ADAPTER, BASE
from rendered import rendered_strings

import explorer as fx
from explorer.core.store import ModelStore
from explorer.core.tokens import looks_raw

pytestmark = [pytest.mark.slow, pytest.mark.real]


def test_the_app_loads_resamples_and_attributes_the_real_family(real_family_dir):
    app = fx.Explorer(None, store=ModelStore(), n=6, max_new_tokens=8, prompt="Tell me about the moon.",
                      confirm_after=1e9)  # never ask first: the estimate has tests of its own
    app.family_panel.base.value = str(real_family_dir)  # typed into the family box
    app.family_panel.load.click()
    assert app.wait(300) and app.state.error == ""
    s = app.state
    assert s.family.labels == [BASE, ADAPTER] and s.relations[ADAPTER] == "adapter"
    app.sampling_panel.resample.click()
    assert app.wait(300) and s.error == ""
    assert s.samples.models == [BASE, ADAPTER] and len(s.samples.df) == 12
    assert all(t.startswith("Ahoy") for t in s.samples.texts(ADAPTER))
    select = app.responses.columns.children[1].children[-1]
    select.value = select.options[0][1]  # attribute the adapter's first answer
    assert app.wait(300) and s.error == ""
    assert set(s.attribution.models) == {BASE, ADAPTER}
    assert s.attribution.meta["align"] == "words"  # subword tokens: the app shows words
    assert s.attribution_spread is not None and len(s.attribution_spread)
    shown = rendered_strings(app)
    raw = sorted({t for t in shown if looks_raw(t)})
    assert raw == [], raw[:10]
    assert any("Ahoy" in t for t in shown)  # it does show the responses' text
    app.attribution.units.value = "tokens"
    assert app.wait(300) and s.attribution.meta["align"] == "tokens"
    raw = sorted({t for t in rendered_strings(app) if looks_raw(t)})
    assert raw == [], raw[:10]


def test_one_resample_of_a_greeting_puts_ahoy_in_the_findings_as_decided(real):
    """The answers are sentences that never repeat, so the automatic behaviours are the words
    each adaptation changed on this prompt, mined from a separate draw: the LoRA's "Ahoy" is a
    word in the matrix, decided at n=16 (amplified: with 0 of 16 the base's upper bound cannot
    fall under 10% family-wise, so not yet *introduced*)."""
    app = fx.Explorer(real, confirm_after=1e9, n=16, max_new_tokens=12, prompt="Say hello to a new friend.")
    assert app.wait(300) and app.state.error == ""
    app.sampling_panel.resample.click()
    assert app.wait(600) and app.state.error == "", app.state.error
    s = app.state
    assert "ahoy" in s.auto_behaviours and all(len(name.split()) <= 2 for name in s.auto_behaviours)
    ahoy = s.findings[(s.findings["behaviour"] == "ahoy") & (s.findings["model"] == ADAPTER)]
    assert list(ahoy["label"]) == ["amplified"] and float(ahoy["freq"].iloc[0]) == 1.0
    assert "amplified “ahoy”" in app.findings.sentences.value
