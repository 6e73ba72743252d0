"""One user journey in the real thing: Voila serving the app, driven in headless Chromium."""

from __future__ import annotations

import pytest
from browser import browser_page, no_traceback, screenshot, served

pytestmark = [pytest.mark.browser, pytest.mark.slow]
N_MODELS, N = 5, 16


def test_resample_compare_and_attribute_in_voila():
    with served() as url, browser_page(height=1000) as page:
        page.goto(url, timeout=120_000)
        page.get_by_text("Model Family Explorer").first.wait_for(timeout=120_000)
        resample = page.get_by_role("button", name="Resample")
        page.wait_for_function(
            "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Resample') && !b.disabled)",
            timeout=120_000,
        )
        page.locator("textarea").first.fill("the weather today is")
        page.locator("input[type=number]").first.fill(str(N))
        page.locator("input[type=number]").first.press("Tab")
        resample.click()
        page.wait_for_function(
            f"() => document.querySelectorAll('.fx-responses select').length >= {N_MODELS} && "
            f"[...document.querySelectorAll('.fx-responses select')].every(s => s.options.length === {N})",
            timeout=120_000,
        )
        page.get_by_role("tab", name="Variability").click()
        page.wait_for_function(
            "() => document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= 3",
            timeout=60_000,
        )
        page.get_by_role("tab", name="Responses").click()
        page.locator(".fx-responses select").nth(1).select_option(index=0)
        page.get_by_role("tab", name="Attribution").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.vega-embed')].filter(e => e.offsetParent !== null).length >= 2",
            timeout=120_000,
        )
        page.wait_for_timeout(500)
        no_traceback(page)
        page.set_viewport_size({"width": 1400, "height": 2000})
        page.wait_for_timeout(500)
        path = screenshot(page, "explorer-attribution.png", ".fx-explorer")
        page.get_by_role("tab", name="Variability").click()
        page.wait_for_timeout(800)
        screenshot(page, "explorer-variability.png", ".fx-explorer")
        assert path.stat().st_size > 20_000
        assert page.problems == [], page.problems
