"""The Discover tab in Voila and headless Chromium, at 1024 and 1600 px: a search over a small
prompt file draws its charts and confirmed findings without overflowing, and opening a prompt
fills the Findings matrix with its discovered behaviours. Screenshots go to test-output/."""

from __future__ import annotations

import re

import pytest
from browser import browser_page, no_traceback, press_and_run_if_asked, screenshot, served
from test_layout_browser import OVERFLOWING, READY, visible_charts

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PROMPTS = "the weather today is\nthe traveller said\nthe capital of sylvane is\nonce upon a time a fox went to the river . it ended\n"
DONE = "() => document.querySelector('.fx-discover').innerText.includes('4 of 4 prompts compared')"


@pytest.mark.parametrize("width", [1024, 1600])
def test_discover_finds_the_changes_and_opens_a_prompt(width, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS)
    with served() as url, browser_page(width=width, height=900) as page:
        page.goto(url, timeout=120_000)
        page.wait_for_function(READY, timeout=120_000)
        page.get_by_role("tab", name="Discover").click()
        tab = page.locator(".fx-discover")
        tab.locator("select").first.select_option(label="a file or sweep folder…")
        tab.locator("input[type=text]").first.fill(str(prompts))
        tab.locator("input[type=text]").first.press("Tab")
        press_and_run_if_asked(page, tab.get_by_role("button", name="Discover"), DONE)
        page.wait_for_function(READY, timeout=120_000)
        visible_charts(page, 2)
        text = page.inner_text(".fx-discover")
        assert re.search("fable-pirate (introduced|amplified) “ahoy”", text) and "fable-cheerful amplified “sunny”" in text
        assert page.evaluate(OVERFLOWING) == [], "Discover"
        assert screenshot(page, f"discover-{width}.png", ".fx-discover").stat().st_size > 20_000
        tab.locator("select").nth(1).select_option(index=_option(page, "fable-pirate", "the traveller said"))
        tab.get_by_role("button", name="Open prompt").click()
        page.get_by_role("tab", name="Findings").click()
        page.wait_for_function("() => document.querySelector('.fx-findings').innerText.includes('ahoy (discovered)')",
                               timeout=120_000)  # fmt: skip
        page.wait_for_function(READY, timeout=120_000)
        assert re.search("fable-pirate (introduced|amplified) “ahoy \\(discovered\\)”", page.inner_text(".fx-findings"))
        screenshot(page, f"discover-findings-{width}.png", ".fx-findings")
        no_traceback(page)
        assert page.problems == [], page.problems


def _option(page, model: str, prompt: str) -> int:
    labels = [t.replace("\xa0", " ") for t in page.locator(".fx-discover select").nth(1).locator("option").all_inner_texts()]
    return next(i for i, label in enumerate(labels) if model in label and prompt in label)
