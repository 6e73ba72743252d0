"""Rare behaviours in Voila and headless Chromium: the whole zoo sampled until every label of
the Findings matrix is decided, then fable-rare's "frog" amplified along the path from the base.
Screenshots go to test-output/ (docs/ keeps one of each)."""

from __future__ import annotations

import re

import pytest
from browser import browser_page, no_traceback, screenshot, serving, told_on_failure
from test_layout_browser import OVERFLOWING, READY, visible_charts

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DECIDED = "() => document.querySelector('.fx-decide').innerText.includes('rounds): every label is decided')"
DRAWN = "() => document.querySelector('.fx-amplify').innerText.includes('read back from')"


def test_a_decided_findings_page_and_the_rate_against_lambda():
    with serving() as server, browser_page(width=1400, height=1000) as page:
        with told_on_failure(page, server, "amplify-journey-failed.png"):
            journey(page, server.url)
        no_traceback(page)
        assert page.problems == [], page.problems


def journey(page, url: str) -> None:
    page.goto(url, timeout=120_000)
    page.wait_for_function(READY, timeout=120_000)
    page.locator(".widget-dropdown select").first.select_option("fable-all")
    page.get_by_role("button", name=re.compile(r"Load$")).click()
    page.wait_for_function("() => document.body.innerText.includes(': 8 models')", timeout=120_000)
    page.wait_for_function(READY, timeout=120_000)
    page.get_by_role("button", name="Resample").click()
    page.wait_for_function("() => document.querySelectorAll('.fx-cell').length >= 7", timeout=120_000)
    page.wait_for_function(READY, timeout=120_000)
    page.get_by_role("button", name="Sample until decided").click()
    page.wait_for_function("() => document.body.innerText.includes('Sample until every label is decided: up to 1024')", timeout=60_000)
    page.get_by_role("button", name="Run").click()
    page.wait_for_function(DECIDED, timeout=300_000)
    page.wait_for_function(READY, timeout=120_000)
    findings = page.inner_text(".fx-findings")
    undecided = "() => [...document.querySelectorAll('.fx-cell')].filter(b => b.innerText.startsWith('inconclusive')).length"
    assert page.evaluate(undecided) == 0 and "however often" in findings
    assert "fable-cheerful amplified “≈ sunny”" in findings
    assert page.evaluate(OVERFLOWING) == [], "Findings"
    assert screenshot(page, "findings-decided.png", ".fx-findings").stat().st_size > 20_000
    page.get_by_role("tab", name="Amplify").click()
    page.locator(".fx-amplify select").first.select_option("fable-rare")
    page.locator(".fx-amplify input[type=text]").first.fill("0, 1, 1.25, 1.5, 1.75, 2, 4")
    page.locator(".fx-amplify input[type=text]").first.press("Tab")
    page.get_by_role("button", name="Amplify").click()
    page.wait_for_function(DRAWN, timeout=120_000)
    visible_charts(page, 1)
    text = page.inner_text(".fx-amplify")
    assert "“≈ frog” in fable-rare: about" in text and "read back from λ = 1.25, 1.5, 1.75, 2, 4" in text
    assert page.evaluate(OVERFLOWING) == [], "Amplify"
    assert screenshot(page, "amplify-rare.png", ".fx-amplify").stat().st_size > 20_000
