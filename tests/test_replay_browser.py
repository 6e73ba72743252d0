"""Replay in Voila: `family-explorer --replay session.json` shows a saved session read-only."""

from __future__ import annotations

import pytest
from browser import browser_page, no_traceback, screenshot, served

import explorer as fx

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_saved_session_replays_in_voila(fable, tmp_path):
    samples = fx.sample(fable, "the weather today is", n=16, max_new_tokens=12, seed=0)
    path = tmp_path / "lesson.json"
    fx.Session(fable.to_dict(), samples).save(path)
    with served(f"--replay={path}") as url, browser_page(width=1280, height=900) as page:
        page.goto(url, timeout=120_000)
        page.wait_for_function("() => document.querySelectorAll('.fx-cell').length >= 4", timeout=120_000)
        assert "Replay of lesson.json: read-only" in page.inner_text("body"), page.inner_text("body")[:700]
        resample = page.get_by_role("button", name="Resample")
        assert resample.is_disabled() and "no model is loaded" in resample.get_attribute("title")
        page.get_by_role("tab", name="Variability").click()
        page.wait_for_function("() => document.querySelectorAll('.vega-embed svg').length >= 3", timeout=60_000)
        no_traceback(page)
        screenshot(page, "replay.png")
        assert page.problems == [], page.problems
