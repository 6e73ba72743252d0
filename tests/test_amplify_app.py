"""The Amplify tab and the Findings tab's "Sample until decided", driven without a browser:
widgets are set and clicked, the state and the charts' specs are asserted."""

from __future__ import annotations

import time

import pytest

import explorer as fx


@pytest.fixture
def rare_app(store):
    """The base and fable-rare (frog 2% after the weather prompt), short answers."""
    app = fx.Explorer("fable", store=store, confirm_after=1e9, n=16, max_new_tokens=2)
    assert app.wait(120)
    app.family_panel.extra.value = "fable-rare"
    app.family_panel.load.click()
    assert app.wait(120) and app.state.error == "" and app.state.available == ["fable-rare"]
    return app


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def layers_of(chart_box) -> list[dict]:
    return chart_box._fx_chart.chart.to_dict()["layer"]


def test_the_amplify_tab_draws_the_rate_against_lambda_after_asking(rare_app):
    app, tab = rare_app, rare_app.amplify
    app.controller.add_behaviour("frog", r"\bfrog\b")
    app.state.confirm_after = 0.0  # every run asks first
    assert tab.descendant.value == "fable-rare" and tab.lambdas.value == "0, 1, 1.25, 1.5, 2, 4"
    tab.lambdas.value, tab.n.value = "0, 1, 1.25, 1.5, 1.75, 2", 48
    tab.go.click()
    assert app.wait(60) and app.state.confirm.startswith("Amplified sampling ≈") and app.state.amplified is None
    app.confirm_bar.run.click()
    assert app.wait(60) and app.state.error == ""
    rates = app.state.path_rates.set_index(["behaviour", "lam"])["freq"]
    assert rates[("frog", 0.0)] == 0 and rates[("frog", 2.0)] > 0.8  # amplified until it is common
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"] for layer in layers_of(tab.chart)]
    assert marks == ["rule", "point", "line", "rule", "point"]  # intervals, rates, fitted line, read-back ◆
    assert "frog" in tab.sentences.value and "read back from λ = 1.25, 1.5, 1.75, 2" in tab.sentences.value
    assert "fable-rare λ=1.5" in tab.table.value
    tab.lambdas.value = "0, one"
    tab.go.click()
    assert app.state.error.startswith("λ: type numbers separated by commas")


def test_stop_while_amplifying_keeps_the_lambdas_that_finished(rare_app):
    app, tab = rare_app, rare_app.amplify
    tab.lambdas.value, tab.n.value = "0, 1, 2, 3, 4, 5, 6, 7", 4096
    tab.go.click()
    wait_for(lambda: sum(v >= 1 for v in app.state.progress.values()) >= 1)
    app.sampling_panel.stop.click()
    assert app.wait(60) and app.state.status.startswith("Stopped: kept λ = 0")
    kept = app.state.amplified.meta["amplify"]["lambdas"]
    assert 1 <= len(kept) < 8 and sorted(app.state.path_rates["lam"].unique()) == kept


def test_deciding_asks_its_budget_and_shows_the_cells_still_undecided(rare_app):
    app, bar = rare_app, rare_app.findings.decide
    app.state.prompt = "the weather today is"
    app.sampling_panel.resample.click()
    assert app.wait(60) and bar.go.disabled is False and app.state.decision == {}
    bar.budget.value = 96
    bar.go.click()
    assert app.wait(60) and "up to 96 samples per model (now 16)" in app.state.confirm
    app.confirm_bar.cancel.click()
    assert app.state.confirm == "" and app.state.samples.params.n == 16  # nothing ran
    seen = []
    app.state.observe(lambda change: seen.append(change["new"].get("undecided")), names="decision")
    bar.go.click()
    assert app.wait(60)
    app.confirm_bar.run.click()
    assert app.wait(120) and app.state.error == ""
    d = app.state.decision
    assert d["reason"] == "budget" and d["per_model"] == 96 == app.state.samples.params.n
    assert seen[0] == d["cells"] == len(app.state.findings) and seen == sorted(seen, reverse=True)
    assert "confidence sequences" in app.state.provenance.attrs["intervals"]
    assert f"{d['undecided']} undecided" in bar.line.value and "however often" in bar.line.value
    assert bar.bar.value == pytest.approx(1 - d["undecided"] / d["cells"])


def test_stop_while_deciding_keeps_a_valid_page(rare_app):
    app, bar = rare_app, rare_app.findings.decide
    app.state.prompt, app.state.max_new_tokens = "the traveller said", 12  # longer answers: many clusters
    app.sampling_panel.resample.click()
    assert app.wait(60)
    bar.budget.value = 4096
    bar.go.click()
    assert app.wait(60)
    app.confirm_bar.run.click()
    wait_for(lambda: app.state.decision.get("rounds", 0) >= 2)
    bar.stop.click()
    assert app.wait(120) and app.state.error == ""
    d = app.state.decision
    assert d["reason"] == "stopped" and "last complete round" in app.state.status
    table = app.state.provenance
    assert (table["n"] == d["per_model"]).all() and app.state.samples.params.n == d["per_model"]
    assert "confidence sequences" in table.attrs["intervals"] and len(app.state.findings) == d["cells"]
