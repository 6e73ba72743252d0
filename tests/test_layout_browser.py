"""The page at a glance, in Voila and headless Chromium at 1024 and 1600 px: findings first, a
click on a finding shows its responses, nothing overflows its box, the page scrolls as a page.
Full-page screenshots go to test-output/ (docs/ keeps the ones looked at)."""

from __future__ import annotations

import pytest
from browser import browser_page, no_traceback, screenshot, served

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Every output box whose content is wider than the box itself: a chart cut off or a table that
# needs a sideways scroll.
OVERFLOWING = """() => [...document.querySelectorAll('.fx-explorer .fx-chart, .fx-explorer .widget-html, .fx-explorer .fx-findings, .fx-explorer .widget-tab-contents')]
  .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
  .map(e => `${e.className.split(' ').slice(0, 3).join('.')}: ${e.scrollWidth} > ${e.clientWidth}`)"""
READY = "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Resample') && !b.disabled)"


def visible_charts(page, at_least: int) -> None:
    page.wait_for_function(
        f"() => [...document.querySelectorAll('.vega-embed svg')].filter(e => e.getBoundingClientRect().width > 0).length >= {at_least}",
        timeout=120_000,
    )
    page.wait_for_timeout(600)


@pytest.mark.parametrize("width", [1024, 1600])
def test_findings_first_nothing_overflows_and_the_page_scrolls(width):
    with served() as url, browser_page(width=width, height=900) as page:
        page.goto(url, timeout=120_000)
        page.wait_for_function(READY, timeout=120_000)
        assert "Start here" in page.inner_text(".fx-findings")  # the empty state says what to do
        page.locator("input[type=number]").first.fill("16")
        page.locator("input[type=number]").first.press("Tab")
        page.get_by_role("button", name="Resample").click()
        page.wait_for_function("() => document.querySelectorAll('.fx-cell').length >= 4", timeout=120_000)
        page.wait_for_function(READY, timeout=120_000)  # scoring done too
        assert page.evaluate(OVERFLOWING) == []
        scrolls = page.evaluate("() => document.scrollingElement.scrollHeight > window.innerHeight")
        shot = screenshot(page, f"findings-{width}.png")
        page.locator(".fx-cell").first.click()
        page.wait_for_function("() => document.querySelector('.fx-focus') !== null", timeout=30_000)
        assert "Responses showing" in page.inner_text(".fx-findings")
        for tab, charts in [("Responses", 0), ("Variability", 4)]:
            page.get_by_role("tab", name=tab).click()
            if charts:
                visible_charts(page, charts)
            page.wait_for_timeout(400)
            assert page.evaluate(OVERFLOWING) == [], tab
            screenshot(page, f"{tab.lower()}-{width}.png")
        page.get_by_role("tab", name="Responses").click()
        page.locator(".fx-responses select").nth(5).select_option(index=0)  # a pirate answer
        page.get_by_role("tab", name="Attribution").click()
        visible_charts(page, 3)
        page.wait_for_function(READY, timeout=120_000)
        page.wait_for_timeout(800)
        assert page.evaluate(OVERFLOWING) == [], "Attribution"
        screenshot(page, f"attribution-{width}.png")
        no_traceback(page)
        assert scrolls, "the page itself scrolls (a full-page screenshot holds everything)"
        assert shot.stat().st_size > 20_000
        assert page.problems == [], page.problems
