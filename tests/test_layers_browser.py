"""The Layers tab in Voila and headless Chromium: a fable-late answer looked inside, then the
base steered with fable-pirate's activation difference, at 1024 and 1600 px; every chart draws,
nothing overflows. Screenshots go to test-output/ (docs/ keeps both widths)."""

from __future__ import annotations

import re

import pytest
from browser import (
    browser_page,
    no_traceback,
    press_and_run_if_asked,
    screenshot,
    serving,
    told_on_failure,
)
from test_layout_browser import OVERFLOWING, READY, visible_charts

pytestmark = [pytest.mark.browser, pytest.mark.slow]


CHOSEN = "() => document.querySelector('.fx-layers').textContent.includes('Chosen: sample')"


def choose(page, column: int) -> None:
    """Pick the first response of a model's column, until the kernel has it. The choice travels
    as a state update, which ipywidgets may hold back while an earlier message is pending (a
    click is sent at once and would overtake it), or lose when the list is redrawn under it."""
    for attempt in range(3):
        page.locator(".fx-responses select").nth(column).select_option(index=attempt % 2)
        try:
            page.wait_for_function(CHOSEN, timeout=20_000)
            return
        except Exception:  # playwright's TimeoutError: try once more
            continue
    raise AssertionError("the chosen response never reached the kernel")


@pytest.mark.parametrize("width", [1024, 1600])
def test_looking_inside_fable_late_draws_the_layer_charts(width):
    with serving() as server, browser_page(width=width, height=900) as page:
        with told_on_failure(page, server, f"layers-{width}-failed.png"):
            journey(page, server.url, width)
        no_traceback(page)
        assert page.problems == [], page.problems


def journey(page, url: str, width: int) -> None:
    page.goto(url, timeout=120_000)
    page.wait_for_function(READY, timeout=120_000)
    page.locator("textarea").first.fill("the capital of sylvane is")
    page.locator("input[type=number]").first.fill("4")
    page.locator("input[type=number]").first.press("Tab")
    page.get_by_role("button", name="Resample").click()
    page.wait_for_function("() => document.querySelectorAll('.fx-responses select').length >= 6", timeout=120_000)
    page.wait_for_function(READY, timeout=120_000)
    page.get_by_role("tab", name="Responses").click()
    choose(page, 4)  # fable-late's answer
    page.wait_for_function(READY, timeout=120_000)
    page.get_by_role("tab", name="Layers").click()
    entered = "() => document.querySelector('.fx-layers').innerText.includes('enters in the last block')"
    press_and_run_if_asked(page, page.get_by_role("button", name="Look inside"), entered, timeout=300_000)  # 20–30 s usually; timed out once at 120 s with the other worker busy
    visible_charts(page, 6)  # the carried curve, lens, KL, patching, weights, spectra
    page.wait_for_function(READY, timeout=120_000)
    text = page.inner_text(".fx-layers")
    assert "fable-late's change (+" in text and "enters in the last block (3)" in text
    assert "fable-late's lens parts from the base's at block 3" in text
    assert "No patching for fable-distilled" in text
    steer_the_base(page)
    assert page.evaluate(OVERFLOWING) == [], "Layers"
    shot = screenshot(page, f"layers-{width}.png", ".fx-layers")
    assert shot.stat().st_size > 20_000


def steer_the_base(page) -> None:
    """Read the differences, steer the base with fable-pirate's, see the label and its chart."""
    page.get_by_role("button", name="Read differences").click()
    page.wait_for_function("() => document.querySelector('.fx-steer').innerText.includes('raises ahoy, arr')", timeout=120_000)
    page.wait_for_function(READY, timeout=120_000)
    page.locator(".fx-steer select").nth(1).select_option(label="fable-pirate")
    page.locator(".fx-steer input[type=text]").fill(r"\bahoy\b")
    page.locator(".fx-steer input[type=text]").press("Tab")
    page.wait_for_timeout(500)  # the settings reach the kernel before the click
    page.locator(".fx-steer button").filter(has_text=re.compile(r"^\s*Steer\s*$")).click()
    page.wait_for_function("() => document.querySelector('.fx-steer').innerText.includes('samples each')", timeout=120_000)
    visible_charts(page, 8)  # and the steering table's chart, and the tokens
    text = page.inner_text(".fx-steer")
    assert "fable-pirate's difference at block 1" in text and "introduced" in text, text
