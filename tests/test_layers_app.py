"""The Layers tab driven without a browser: look inside every model at a chosen response."""

from __future__ import annotations

import pytest

PROMPT = "the capital of sylvane is"  # fable-late swapped this capital, in its last block only


@pytest.fixture
def app(fable_app):
    app = fable_app(n=4, max_new_tokens=3)
    app.family_panel.members.value = ("fable-distilled", "fable-late", "fable-pirate")
    app.prompt_panel.text.value = PROMPT
    app.sampling_panel.resample.click()
    assert app.wait(120) and app.state.error == ""
    return app


def choose(app, model: str) -> None:
    column = app.state.samples.models.index(model)
    select = app.responses.columns.children[column].children[-1]
    select.value = select.options[0][1]
    assert app.wait(120)


def test_look_inside_finds_the_edited_block_of_fable_late(app):
    layers = app.layers
    assert layers.go.disabled  # nothing chosen yet
    choose(app, "fable-late")
    s = app.state
    assert "tirwick" in s.samples.df.query("model == 'fable-late'").text.iloc[0]
    assert not layers.go.disabled and "Look inside" in layers.info.value
    layers.go.click()
    assert app.wait(120) and s.error == "", s.error
    found = s.inside
    assert set(found.lens.model) == set(s.samples.models)
    assert set(found.patches) == {"fable-late", "fable-pirate"}  # distilled has other shapes
    late = found.patches["fable-late"].layers.set_index("layer")
    assert late.loc[3, "recovered"] >= 0.9 and abs(late.loc[0, "recovered"]) <= 0.01
    assert any("No patching for fable-distilled" in n for n in found.notes)
    assert "fable-late&#x27;s change (+" in layers.summary.value  # the summary's sentences, escaped
    assert "enters in the last block (3): no earlier block&#x27;s output carries" in layers.summary.value
    assert "fable-pirate and fable-base differ by only" in layers.summary.value  # no share of a small change
    assert "fable-late&#x27;s lens parts from the base&#x27;s at block 3" in layers.summary.value
    assert all(box.children and hasattr(box.children[0], "chart") for box in
               (layers.carried, layers.lens, layers.kl, layers.patches, layers.weights, layers.spectra))  # fmt: skip
    spectra = found.spectra.set_index("model")
    assert (spectra.loc["fable-pirate", "effective_rank"] <= 8).all() and (spectra.loc["fable-late", "effective_rank"] > 8).all()
    assert s.status.startswith("Looked inside 4 models")


def test_the_site_menu_repatches_and_a_new_choice_clears_the_old_result(app):
    choose(app, "fable-late")
    app.layers.go.click()
    assert app.wait(120)
    app.layers.site.value = "mlp"
    assert app.wait(120)
    assert app.state.inside.site == "mlp"
    late = app.state.inside.patches["fable-late"].layers.set_index("layer")
    assert late.loc[3, "recovered"] > 0.05 and late.loc[0, "effect"] == 0
    choose(app, "fable-pirate")
    assert app.state.inside is None and "Look inside" in app.layers.info.value


def test_a_long_look_inside_asks_first_and_cancel_runs_nothing(app):
    choose(app, "fable-late")
    app.state.confirm_after = 0.0
    app.layers.go.click()
    assert app.wait(120)
    assert app.state.confirm.startswith("Looking inside ≈ ") and "Run or Cancel" in app.state.confirm
    assert app.state.inside is None
    app.confirm_bar.cancel.click()
    assert app.state.confirm == "" and app.state.inside is None


def test_stop_while_patching_keeps_the_lens_and_ends_within_a_pass(app, monkeypatch):
    import explorer.core.layers.sites as sites

    monkeypatch.setattr(sites, "ROW_BYTES", 1)  # one site per pass: 33 passes for fable-late
    choose(app, "fable-late")
    seen = []

    def stop_at_first_pass(change):
        done = change["new"].get("patching fable-late", 0)
        if done > 0 and not seen:
            seen.append(done)
            app.sampling_panel.stop.click()

    app.state.observe(stop_at_first_pass, names="progress")
    app.layers.go.click()
    assert app.wait(120)
    s = app.state
    assert seen and seen[0] < 0.1
    assert s.status == "Stopped: kept the lens, the weights and the patching of no donor yet"
    assert s.inside is not None and set(s.inside.lens.model) == set(s.samples.models)
    assert s.inside.patches == {} and s.inside.weights is not None


def test_read_differences_then_steer_the_base_and_see_the_label(app):
    panel = app.layers.added
    assert panel.go.disabled and not panel.read.disabled  # nothing read yet
    app.prompt_panel.text.value = "the traveller said"
    panel.read.click()
    assert app.wait(120) and app.state.error == "", app.state.error
    s = app.state
    assert s.diffs.models == ["fable-late", "fable-pirate"] and "the traveller said" not in s.diffs.texts
    assert "31 of the 67 texts left out" in panel.summary.value  # the English ones, and the 3-token prompt
    assert "No activation difference for fable-distilled" in panel.summary.value
    assert "<b>fable-pirate</b> raises ahoy, arr" in panel.summary.value and panel.tokens.children
    panel.model.value = "fable-pirate"
    panel.layer.value = 2
    assert s.steer_model == "fable-pirate" and s.diff_layer == 2
    panel.behaviour.value = "(unclosed"
    panel.go.click()
    assert "not a valid regex" in s.error and s.steered is None
    panel.behaviour.value = r"\bahoy\b"
    panel.go.click()
    assert app.wait(120) and s.error == "", s.error
    steered = s.steered_table.set_index("model")
    label = s.steered.meta["steering"]["label"]
    assert steered.loc[label, "label"] == "introduced" and steered.loc["fable-base", "count"] == 0
    assert "<b>introduced</b>" in panel.result.value and "at block 2, 64 samples each" in panel.result.value
    assert panel.rates.children and s.status.startswith("Steered fable-base with fable-pirate")


def test_a_long_steering_run_asks_first_and_stop_keeps_the_reading(app):
    panel = app.layers.added
    panel.read.click()
    assert app.wait(120)
    panel.behaviour.value = r"\bahoy\b"
    app.state.confirm_after = 0.0
    panel.go.click()
    assert app.wait(120) and app.state.confirm.startswith("Steering ≈ ") and app.state.steered is None
    seen = []

    def stop_once(change):
        if any(k.endswith("Δ fable-late") or k == "fable-base" for k in change["new"]) and not seen:
            seen.append(1)
            app.sampling_panel.stop.click()

    app.state.observe(stop_once, names="progress")
    app.confirm_bar.run.click()
    assert app.wait(120)
    assert seen and app.state.status == "Steering stopped" and app.state.steered is None
    assert app.state.diffs is not None and panel.summary.value  # the reading stays
