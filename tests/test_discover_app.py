"""The Discover tab without a browser: the question before a long search, progress per prompt,
Stop keeping the prompts that finished, and a click from a result to the prompt and its
confirmed findings."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.slow
PROMPTS = "the weather today is\nthe traveller said\nthe capital of sylvane is\n"


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text(PROMPTS)
    return path


def run_on(app, path, n=8, confirm=32) -> None:
    tab = app.discover
    tab.which.value, tab.path.value = "file", str(path)
    tab.n.value, tab.confirm_n.value = n, confirm
    tab.go.click()


def test_a_long_search_asks_first_and_cancel_runs_nothing(fable_app, prompt_file):
    app = fable_app(confirm_after=0.0)  # every estimate is "long"
    run_on(app, prompt_file)
    assert app.wait(120)
    s = app.state
    assert s.confirm.startswith("Discover ≈ ") and "3 prompts × 6 models × 8 samples" in s.confirm
    assert s.discovery is None
    app.confirm_bar.cancel.click()
    assert s.confirm == "" and s.discovery is None and "nothing changed" in s.status
    run_on(app, prompt_file)
    assert app.wait(120)
    app.confirm_bar.run.click()
    assert app.wait(300) and s.error == "", s.error
    assert s.discovery is not None and len(s.discovery.prompts) == 3


def test_progress_per_prompt_then_a_click_opens_a_prompt_with_its_discovered_findings(fable_app, prompt_file):
    app = fable_app()
    seen: list[dict] = []
    app.state.observe(lambda change: seen.append(dict(change["new"])), names="progress")
    run_on(app, prompt_file)
    assert app.wait(300) and app.state.error == "", app.state.error
    assert any("discovering" in p for p in seen) and any("confirming" in p for p in seen)
    tab, s = app.discover, app.state
    assert "3 of 3 prompts compared" in tab.summary.value
    greeting = next(i for label, i in tab.prompts.options if "fable-pirate" in label and "the traveller said" in label)
    tab.prompts.value = greeting
    tab.open_prompt.click()
    assert app.wait(120) and s.error == ""
    assert s.prompt == "the traveller said" and s.samples is s.discovery.confirmations[greeting]
    ahoy = s.findings[(s.findings["behaviour"] == "ahoy (discovered)") & (s.findings["model"] == "fable-pirate")]
    assert list(ahoy["label"]) in (["amplified"], ["introduced"])
    app.controller.focus("ahoy (discovered)", "fable-pirate")  # the responses behind the cell
    assert len(s.focus_responses) and s.focus_responses["text"].str.contains("ahoy").any()
    tab.word.value = ("fable-pirate", "ahoy")
    assert "the traveller said" in tab.contexts.value and "fable-pirate" in tab.contexts.value


def test_stop_keeps_the_prompts_that_finished(fable_app):
    app = fable_app()
    s = app.state
    stopped = threading.Event()

    def stop_after_two(change) -> None:
        if change["new"].get("discovering", 0) >= 2 / 46 and not stopped.is_set():
            stopped.set()
            app.controller.stop()

    s.observe(stop_after_two, names="progress")
    app.discover.which.value = "probes"
    app.discover.go.click()
    assert app.wait(300) and s.error == "", s.error
    assert stopped.is_set() and s.discovery is not None
    done = len(s.discovery.prompts)
    assert 2 <= done < 46 and s.status.startswith(f"Stopped: kept {done} of 46 prompts compared")
    assert len(s.discovery.df) == done * 5 and s.discovery.findings.empty  # stopped before confirming
