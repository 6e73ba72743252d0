"""The report opens from disk in headless Chromium with every network request blocked: every
chart renders, nothing errs, and hostile text shows literally with no script run."""

from __future__ import annotations

import pytest
from browser import browser_page, screenshot
from tiny import hostile_family

import explorer as fx
from explorer.core.store import ModelStore

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def open_offline(page, path) -> list[str]:
    """Load `path` through file:// with anything else refused; returns the refused URLs."""
    refused: list[str] = []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.resolve().as_uri())
    return refused


def test_a_fable_report_renders_offline(fable, tmp_path):
    samples = fx.sample(fable, "the weather today is", n=16, max_new_tokens=24, seed=0)
    attr = fx.attribute(fable, samples.prompt, samples.texts("fable-pirate")[0], method="grad_x_input")
    path = fx.Session(fable.to_dict(), samples, {}, attr, ("fable-pirate", 0)).report(tmp_path / "weather.html")
    with browser_page(width=1280, height=900) as page:
        refused = open_offline(page, path)
        n_charts = page.locator(".chart").count()
        page.wait_for_function(f"() => document.querySelectorAll('.chart svg').length === {n_charts}", timeout=60_000)
        page.wait_for_timeout(300)
        assert n_charts >= 7 and refused == [] and page.problems == [], (refused, page.problems)
        marks = page.evaluate("() => document.querySelectorAll('.chart svg path, .chart svg rect').length")
        assert marks > 100  # drawn, not empty frames
        screenshot(page, "report.png")


def test_hostile_text_shows_literally_and_runs_nothing(tmp_path):
    family = fx.load_family(str(hostile_family(tmp_path / "family")), store=ModelStore())
    samples = fx.sample(family, "hello <script>alert(3)</script>", n=12, max_new_tokens=6, seed=0)
    path = fx.report(samples, tmp_path / "hostile.html")
    with browser_page(width=1280, height=900) as page:
        refused = open_offline(page, path)
        n_charts = page.locator(".chart").count()
        page.wait_for_function(f"() => document.querySelectorAll('.chart svg').length === {n_charts}", timeout=60_000)
        page.wait_for_timeout(300)
        assert "hello <script>alert(3)</script>" in page.inner_text("body")  # the prompt, as text
        assert page.evaluate("() => document.querySelectorAll('body img, body script:not([src])').length") == 3  # only ours
        assert refused == [] and page.problems == [], (refused, page.problems)  # no alert() dialog ran
