"""The app driven without a browser: widgets are set and clicked, the state is asserted."""

from __future__ import annotations

import pytest

import explorer as fx


@pytest.fixture
def app(fable_app):
    return fable_app(n=8, max_new_tokens=12)


def test_loading_fills_the_family_panel(app):
    s = app.state
    assert s.family.base.label == "fable-base"
    assert s.available == ["fable-cheerful", "fable-distilled", "fable-instruct", "fable-late", "fable-pirate"]
    labels = [label for label, _ in app.family_panel.members.options]
    assert "fable-pirate — LoRA adapter" in labels
    assert "the weather today is" in s.examples
    assert app.sampling_panel.n.value == 8  # widgets show the state's values
    assert app.sampling_panel.resample.disabled is False


def test_the_family_box_offers_the_whole_zoo(app):
    panel = app.family_panel
    assert list(panel.preset.options[:2]) == ["fable", "fable-all"]
    panel.preset.value = "fable-all"
    panel.load.click()
    assert app.wait(120) and app.state.error == ""
    assert {"fable-mid", "fable-rare"} <= set(app.state.available)
    assert "the weather today is" in app.state.examples  # the zoo's examples, not the fallback
    panel.preset.value = "fable"
    panel.extra.value = "fable-rare"  # a zoo member by name, beside the base
    panel.load.click()
    assert app.wait(120) and app.state.available == ["fable-rare"]


def resample(app, timeout=120):
    app.sampling_panel.resample.click()
    assert app.wait(timeout)


def test_resample_fills_every_tab(app):
    app.family_panel.members.value = ("fable-cheerful", "fable-pirate")
    app.prompt_panel.text.value = "the weather today is"
    resample(app)
    s = app.state
    assert s.error == ""
    assert s.samples.models == ["fable-base", "fable-cheerful", "fable-pirate"]
    assert len(s.samples.df) == 24
    columns = app.responses.columns.children
    assert len(columns) == 3
    assert all(len(col.children[-1].options) == 8 for col in columns)
    assert set(s.variability["model"]) == set(s.samples.models)
    assert s.cross is not None and s.log_ratio is not None
    assert "samples from 3 models" in s.status
    assert "fable-pirate" in app.data.table.value


def test_double_click_never_starts_two_runs(app):
    started = []
    app.state.observe(
        lambda c: started.append(c["new"]) if c["new"] == "Sampling" else None, names="running"
    )
    app.sampling_panel.resample.click()
    app.sampling_panel.resample.click()
    assert app.wait(120)
    assert started == ["Sampling"]
    assert len(app.state.samples.df) == 8 * 6


def test_stop_cancels_and_keeps_finished_models(app, monkeypatch):
    """Stop pressed while the second model samples: the first is kept whole, nothing after.
    The press happens as the second model starts (fable samples 64 × 200 tokens in a fraction
    of a second, faster than the page hears of its progress)."""
    app.state.max_new_tokens = 200
    app.state.n = 64
    app.state.prompt = "once upon a time"
    core, started = app.controller.core, []
    sample = core.sample

    def sample_and_press_stop_on_the_second(family, prompt, label, *args):
        started.append(label)
        if len(started) == 2:
            app.sampling_panel.stop.click()
        return sample(family, prompt, label, *args)

    monkeypatch.setattr(core, "sample", sample_and_press_stop_on_the_second)
    app.sampling_panel.resample.click()
    assert app.wait(120)
    assert app.state.running == ""
    assert "Stopped" in app.state.status
    assert app.state.samples is not None
    assert app.state.samples.models == started[:1]  # the finished one, not the rest
    assert (app.state.samples.df.groupby("model").size() == 64).all()  # each one complete


def test_choosing_a_response_attributes_it_in_every_model(app):
    resample(app)
    column = app.responses.columns.children[1]
    select = column.children[-1]
    select.value = select.options[0][1]
    assert app.wait(120)
    s = app.state
    assert s.chosen == ("fable-cheerful", select.options[0][1])
    assert s.attribution is not None and set(s.attribution.models) == set(s.samples.models)
    assert s.attribution_spread is not None and len(s.attribution_spread) > 0
    app.attribution.method.value = "occlusion"
    assert app.wait(120)
    assert s.attribution.meta["method"] == "occlusion"
    app.attribution.method.value = "integrated_gradients"  # adaptive: says how complete it is
    assert app.wait(300)
    assert s.attribution.meta["method"] == "integrated_gradients"
    gaps = [max(e["completeness_gap"]) for e in s.attribution.meta["extra"].values()]
    assert f"completeness gap ≤ {max(gaps):.1%}" in app.attribution.info.value


def test_behaviours_from_the_ui(app):
    resample(app)
    app.variability.name.value = "sunny"
    app.variability.regex.value = r"\bsunny\b"
    app.variability.add.click()
    assert set(app.state.provenance["behaviour"]) == {"sunny"}
    app.variability.regex.value = "("
    app.variability.add.click()
    assert "is not a valid regex" in app.state.error
    assert "sunny" in app.state.behaviours


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt", "   ", "prompt: is empty"),
        ("prompt", "the " * 300, "prompt: is 301 tokens"),
        ("max_new_tokens", 4000, "max_new_tokens: 4000 does not fit"),
    ],
)
def test_bad_input_shows_a_message_and_the_app_stays_usable(app, field, value, message):
    setattr(app.state, field, value)
    app.sampling_panel.resample.click()
    assert app.wait(60)
    assert message in app.state.error
    assert message in app.children[1].value  # the banner
    assert "Traceback" not in app.children[1].value
    app.state.prompt, app.state.max_new_tokens = "the weather today is", 12
    resample(app)
    assert app.state.error == ""
    assert len(app.state.samples.df) > 0


def test_a_family_that_fails_to_load_says_why(store):
    explorer = fx.Explorer("./no/such/model", store=store)
    assert explorer.wait(60)
    assert "no such file or folder" in explorer.state.error
    assert explorer.state.family is None
    explorer.family_panel.preset.value = "fable"
    explorer.family_panel.load.click()
    assert explorer.wait(120)
    assert explorer.state.family is not None and explorer.state.error == ""


def test_session_export_and_import_round_trip(app, tmp_path):
    resample(app)
    app.controller.add_behaviour("sunny", r"\bsunny\b")
    path = tmp_path / "session.json"
    app.controller.session().save(path)
    before = app.state.samples.df.copy()
    app.state.seed = 99
    resample(app)
    assert not app.state.samples.df.equals(before)
    assert app.controller.import_session(path)
    import pandas as pd

    pd.testing.assert_frame_equal(app.state.samples.df, before)
    truncated = tmp_path / "bad.json"
    truncated.write_text(path.read_text()[:100])
    assert not app.controller.import_session(truncated)
    assert "nothing changed" in app.state.error
    pd.testing.assert_frame_equal(app.state.samples.df, before)


def test_downloads_are_prepared_and_hold_the_results(app, tmp_path):
    import base64
    import io
    import re

    import pandas as pd

    resample(app)
    app.data.prepare.click()
    links = dict(re.findall(r'download="([^"]+)" href="data:[^;]+;base64,([^"]+)"', app.data.links.value))
    assert set(links) >= {"samples.csv", "samples.parquet", "session.json", "clusters.png", "clusters.svg", "provenance.csv"}
    files = {name: base64.b64decode(data) for name, data in links.items()}
    df = app.state.samples.df
    csv = pd.read_csv(io.BytesIO(files["samples.csv"]), keep_default_na=False)
    assert list(csv["text"]) == list(df["text"]) and list(csv["model"]) == list(df["model"])
    parquet = pd.read_parquet(io.BytesIO(files["samples.parquet"]))
    assert [list(t) for t in parquet["token_ids"]] == [list(t) for t in df["token_ids"]]
    (tmp_path / "session.json").write_bytes(files["session.json"])
    pd.testing.assert_frame_equal(fx.Session.load(tmp_path / "session.json").samples.df, df)
    assert files["clusters.png"].startswith(b"\x89PNG") and len(files["clusters.png"]) > 2000
    assert b"<svg" in files["clusters.svg"] and b"fable-base" in files["clusters.svg"]
    prov = pd.read_csv(io.BytesIO(files["provenance.csv"]))
    assert len(prov) == len(app.state.provenance)


def test_hostile_text_is_escaped_everywhere(app):
    from explorer.app.widgets import escape, table_html

    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    assert "<script>" not in escape(payload)
    import pandas as pd

    assert "<img" not in table_html(pd.DataFrame({"text": [payload]}))
    app.controller.fail(payload)
    assert "<script>" not in app.children[1].value and "&lt;script&gt;" in app.children[1].value


def test_progress_bars_while_sampling(app):
    seen = []
    app.state.observe(
        lambda c: seen.append(len(app.sampling_panel.bars.children)), names="progress"
    )
    resample(app)
    assert max(seen) >= 1
    assert app.sampling_panel.bars.children == ()


def test_the_data_tab_opens_a_sweep(app, tmp_path):
    from explorer.core.params import SamplingParams
    from explorer.core.sweep import PromptSpec, run_sweep

    out = tmp_path / "sweep"
    prompts = [
        PromptSpec("the weather today is", {"sunny": r"\bsunny\b"}),
        PromptSpec("the traveller said", {}),
    ]
    run_sweep(app.state.family, prompts, SamplingParams(n=4, max_new_tokens=6), out)
    app.data.sweep_dir.value = str(out)
    app.data.open_sweep.click()
    assert app.state.error == ""
    assert len(app.state.sweep["samples"]) == 2 * 6 * 4
    assert "provenance labels across the prompt set" in app.data.sweep_view.value
    app.data.sweep_dir.value = str(tmp_path / "nothing")
    app.data.open_sweep.click()
    assert "Could not open the sweep" in app.state.error


def test_a_redrawn_chart_reuses_its_widget():
    import altair as alt
    import pandas as pd

    from explorer.app.widgets import chart_box, show_chart

    box = chart_box()
    first = alt.Chart(pd.DataFrame({"x": [1, 2]})).mark_point().encode(x="x")
    show_chart(box, first)
    widget = box.children[0]
    show_chart(box, alt.Chart(pd.DataFrame({"y": [3]})).mark_bar().encode(x="y"))
    assert box.children[0] is widget and "bar" in str(widget.spec["mark"])
    show_chart(box, None, "gone")
    assert "gone" in box.children[0].value
    assert widget.comm is not None  # kept for the next chart: closing raced the page's set-up
    show_chart(box, first)
    assert box.children[0] is widget and "point" in str(widget.spec["mark"])  # one widget per box


def pick_first_response(app, column=1):
    select = app.responses.columns.children[column].children[-1]
    select.value = select.options[0][1]


def test_the_estimate_appears_before_a_long_attribution_and_run_goes_on(fable_app):
    app = fable_app(n=8, max_new_tokens=12, confirm_after=1e9)
    resample(app)
    pick_first_response(app)
    assert app.wait(120) and app.state.attribution.meta["method"] == "grad_x_input"
    app.state.confirm_after = 0.0  # every attribution counts as long now
    app.attribution.method.value = "integrated_gradients"
    assert app.wait(120)
    question = app.state.confirm
    assert question.startswith("Attribution ≈ ") and "on this machine" in question
    assert "integrated_gradients in 6 models, then grad_x_input over" in question
    assert app.confirm_bar.layout.display == "flex" and "Run or Cancel" in app.confirm_bar.message.value
    assert app.state.attribution.meta["method"] == "grad_x_input"  # nothing ran before the answer
    app.confirm_bar.run.click()
    assert app.wait(300)
    assert app.confirm_bar.layout.display == "none"
    assert app.state.attribution.meta["method"] == "integrated_gradients"


def test_stop_during_the_spread_over_samples_keeps_what_finished(app):
    resample(app)
    seen = []

    def stop_at_first_spread(change):
        if change["new"].get("spread over samples", 0) > 0 and not seen:
            seen.append(change["new"]["spread over samples"])
            app.sampling_panel.stop.click()

    app.state.observe(stop_at_first_spread, names="progress")
    pick_first_response(app)
    assert app.wait(120)
    s = app.state
    assert seen and s.running == ""
    assert s.attribution is not None and len(s.attribution.models) == 6  # the first part finished
    assert s.status.startswith("Stopped: kept the attribution and the spread over the first")
    spread = s.attribution_spread
    assert spread is not None and 1 <= spread["n"].max() <= 2  # within one pass of the click
    assert spread["model"].nunique() == 1  # only the model in flight had samples done


def test_stop_during_cross_scoring_keeps_the_samples_and_the_scores_done(app):
    seen = []

    def stop_while_scoring(change):
        if 0 < change["new"].get("scoring", 0) < 1 and not seen:
            seen.append(change["new"]["scoring"])
            app.sampling_panel.stop.click()

    app.state.observe(stop_while_scoring, names="progress")
    resample(app)
    s = app.state
    assert seen and s.running == ""
    assert s.samples is not None and s.samples.models == s.family.labels  # every model sampled
    assert s.status.startswith("Stopped while scoring: kept the samples and the scores under")
    scorers = s.cross["scorer"].unique()
    assert 1 <= len(scorers) < 6 and s.log_ratio is None  # stopped within a scorer of the click


def test_findings_come_first_and_a_click_shows_the_responses_behind_one(fable_app):
    app = fable_app(n=32, max_new_tokens=6)
    assert app.tabs.selected_index == 0 and app.tabs.titles[0] == "Findings"
    assert "Resample" in app.findings.intro.value and app.findings.examples.children  # empty state
    resample(app)
    s = app.state
    table = s.findings
    assert len(table) == s.provenance["behaviour"].nunique() * 5  # every behaviour × descendant
    cells = [c for c in app.findings.matrix.children if isinstance(c, fx_button())]
    assert len(cells) == len(table)
    assert all(c.tooltip and " vs " in c.tooltip for c in cells)  # both rates on hover
    cheerful = next(c for c in cells if "fable-cheerful" in c.tooltip and "sunny" in c.tooltip)
    assert cheerful.description.startswith("amplified 100%")
    assert "fable-cheerful amplified “≈ sunny”" in app.findings.sentences.value
    cheerful.click()
    assert s.focus == ("≈ sunny", "fable-cheerful")
    behind = s.focus_responses
    assert set(behind["model"]) <= {"fable-cheerful", "fable-base"} and len(behind[behind["model"] == "fable-cheerful"]) == 32
    assert "Responses showing “≈ sunny”" in app.findings.behind.value and "32 of 32" in app.findings.behind.value


def test_each_response_once_with_its_cluster_as_a_chip_that_shows_its_responses(app):
    resample(app)
    column = app.responses.columns.children[0]
    select = column.children[-1]
    assert len(select.options) == 8 and select.rows == 8  # every sample reachable
    assert all("[" not in label for label, _ in select.options)  # the text once, no repeated tag
    chips = column.children[1].children
    assert chips and sum(int(c.description.rsplit("×", 1)[1]) for c in chips) <= 8
    chips[0].click()
    behaviour, model = app.state.focus
    assert model == "fable-base" and behaviour.startswith("≈ ")
    assert "Responses showing" in app.responses.behind.value


def fx_button():
    import ipywidgets

    return ipywidgets.Button


def test_a_saved_session_replays_without_loading_any_model(app, tmp_path):
    from explorer.core.store import ModelStore

    resample(app)
    pick_first_response(app)
    assert app.wait(120)
    path = tmp_path / "lesson.json"
    app.controller.session().save(path)
    store = ModelStore()
    replay = fx.Explorer(None, store=store, replay=path)
    s = replay.state
    assert s.replay and s.family is None and s.error == ""
    assert s.samples.models == app.state.samples.models and s.findings is not None and len(s.findings)
    assert s.attribution is not None and len(replay.findings.matrix.children) > 5
    assert replay.sampling_panel.resample.disabled and "no model is loaded" in replay.sampling_panel.resample.tooltip
    assert "Replay of lesson.json: read-only" in s.status
    assert store.cached == [] and store._tokenizers == {}  # no model (nor tokenizer) was loaded
    replay.prompt_panel.text.value = "something else"
    replay.sampling_panel.resample.click()  # disabled in the page; a click from code changes nothing
    assert replay.wait(10) and s.samples.models == app.state.samples.models


def test_the_data_tab_offers_the_html_report(app):
    resample(app)
    app.data.prepare.click()
    assert app.wait(60)
    names = [f.filename for f in app.state.downloads]
    assert names[0] == "report.html" and "Report (HTML)" in app.data.links.value
    page = app.state.downloads[0].data.decode()
    assert "vegaEmbed" in page and "Findings" in page
