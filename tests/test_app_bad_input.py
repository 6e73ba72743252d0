"""Every bad input of the hardening issue, through the app: the banner explains it, no traceback,
and the next valid action works. Also: changing the family during a run, and a closed page."""

from __future__ import annotations

import threading
import time

import pytest
from bad_inputs import BEHAVIOURS, FAMILIES, SAMPLING
from handmade import handmade
from tiny import char_tokenizer, tiny_llama

import explorer as fx
from explorer.app.widgets import escape

pytestmark = pytest.mark.slow


@pytest.fixture
def app(fable_app):
    return fable_app(n=4, max_new_tokens=6)


def banner(app) -> str:
    return app.children[1].value


def resample_works(app) -> None:
    app.state.prompt, app.state.max_new_tokens, app.state.n = "the weather today is", 6, 4
    app.state.temperature, app.state.top_p = 1.0, 1.0
    app.sampling_panel.resample.click()
    assert app.wait(120)
    assert app.state.error == "", app.state.error
    assert len(app.state.samples.df) == 4 * len(app.state.samples.models)


@pytest.mark.parametrize(
    ("values", "message"), [c[1:] for c in SAMPLING], ids=[c[0] for c in SAMPLING]
)
def test_bad_sampling_input_is_explained_in_the_banner(app, values, message):
    for name, value in values.items():
        setattr(app.state, name, value)
    app.sampling_panel.resample.click()
    assert app.wait(60)
    assert message in app.state.error and escape(message) in banner(app)
    assert "Traceback" not in banner(app)
    resample_works(app)


ODD = ["the weather\x00 today\x07 is\x1b[31m", "the weather today is 🌞🌧️", "הַמֶּזֶג הַיּוֹם the weather",
       "<img src=x onerror=alert(1)> the weather"]  # fmt: skip


@pytest.mark.parametrize("prompt", ODD, ids=["control-characters", "emoji", "rtl", "markup"])
def test_odd_prompts_just_work(app, prompt):
    app.prompt_panel.text.value = prompt
    app.sampling_panel.resample.click()
    assert app.wait(120)
    assert app.state.error == "" and app.state.samples.prompt == prompt


@pytest.mark.parametrize(
    ("make", "message"), [c[1:] for c in FAMILIES], ids=[c[0] for c in FAMILIES]
)
def test_a_bad_family_is_explained_and_the_next_load_works(app, tmp_path, zoo_path, make, message):
    app.family_panel.base.value = str(make(tmp_path, zoo_path))
    app.family_panel.load.click()
    assert app.wait(120)
    assert message in app.state.error and escape(message) in banner(app), app.state.error
    assert "Traceback" not in banner(app)
    app.family_panel.base.value = ""
    app.family_panel.load.click()  # the preset (fable) again
    assert app.wait(120) and app.state.error == ""
    resample_works(app)


def test_a_descendant_with_another_vocabulary(app, tmp_path, zoo_path):
    other = tiny_llama(tmp_path / "chars", char_tokenizer())
    app.family_panel.base.value = str(zoo_path / "fable-base")
    app.family_panel.extra.value = str(other)
    app.family_panel.load.click()
    assert app.wait(120) and app.state.error == ""
    resample_works(app)
    s = app.state
    assert s.samples.models == ["fable-base", "chars"] and s.log_ratio is None
    column = app.responses.columns.children[0]
    column.children[-1].value = column.children[-1].options[0][1]
    assert app.wait(120) and s.error == ""
    assert "Log-ratios against the base are unavailable" in app.responses.token_note.value
    assert s.attribution.meta["align"] == "words"  # matrices line up word by word
    assert set(s.attribution.models) == {"fable-base", "chars"}


def test_changing_the_family_during_a_run_leaves_no_stuck_thread(app):
    app.state.n, app.state.max_new_tokens, app.state.prompt = 256, 100, "once upon a time"
    app.sampling_panel.resample.click()
    time.sleep(0.5)
    assert app.state.running == "Sampling"
    app.family_panel.base.value = ""
    app.family_panel.preset.value = "fable"
    app.family_panel.load.click()  # supersedes (cancels) the run
    assert app.wait(120)
    s = app.state
    assert s.running == "" and s.error == "" and s.family is not None and s.samples is None
    old = [t for t in threading.enumerate() if t.name == "explorer-Sampling"]
    for t in old:  # the superseded run was cancelled: it ends within a decoding step or so
        t.join(5)
    assert not [t for t in old if t.is_alive()]
    resample_works(app)


def test_a_closed_page_cancels_its_run(store):
    app = fx.Explorer("fable", store=store, n=256, max_new_tokens=100, prompt="once upon a time",
                      confirm_after=1e9)  # a long run that starts at once
    assert app.wait(120)
    app.sampling_panel.resample.click()
    time.sleep(0.5)
    job, thread = app.controller.runner.job, app.controller.runner._thread
    assert app.state.running == "Sampling" and thread.is_alive()
    started = time.monotonic()
    app.close()  # the page's widgets go away: the run is cancelled, not left to finish
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert job.cancel.cancelled


@pytest.mark.parametrize(("pattern", "text", "message"), [c[1:] for c in BEHAVIOURS], ids=[c[0] for c in BEHAVIOURS])
def test_a_bad_behaviour_typed_in_the_app_is_a_sentence_and_the_rest_still_counts(store, tmp_path, pattern, text, message):
    """Each bad behaviour of the table through the behaviour box, on a replayed session whose
    responses hold the text it is hostile to; the kernel stays free and other behaviours count."""
    session = tmp_path / "session.json"
    fx.Session({"name": "handmade", "members": [{"label": "base"}, {"label": "kid"}]},
               handmade({"base": [text, "day", text, "rain"], "kid": [text, "day", "day", text]}),
               {"day": r"\bday\b"}).save(session)  # fmt: skip
    app = fx.Explorer(replay=session, store=store)
    app.variability.name.value, app.variability.regex.value = "odd", pattern
    done = threading.Event()
    worker = threading.Thread(target=lambda: (app.variability.on_add(), done.set()), daemon=True)
    worker.start()
    assert done.wait(120), "the behaviour box hung"
    s = app.state
    assert s.provenance[s.provenance["behaviour"] == "day"].set_index("model")["count"].to_dict() == {"base": 1, "kid": 2}
    if message is None:
        assert s.error == "" and "odd" in set(s.provenance["behaviour"])
    else:
        assert message in s.error and "'odd'" in s.error and escape(message) in banner(app)
        assert "odd" not in set(s.provenance["behaviour"])
