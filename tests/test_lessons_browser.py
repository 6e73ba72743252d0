"""Each lesson opens in Voila with its widgets drawn and no error."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import browser_page, no_traceback, served

pytestmark = [pytest.mark.browser, pytest.mark.slow]
LESSONS = sorted(
    p.stem for p in (Path(__file__).resolve().parent.parent / "notebooks").glob("0*.ipynb")
)


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_renders_in_voila(lesson):
    with served(lesson) as url, browser_page() as page:
        page.goto(url, timeout=300_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.jupyter-widgets').length > 0", timeout=300_000
        )
        page.wait_for_function(
            "() => document.querySelectorAll('.vega-embed canvas, .vega-embed svg, .fx-explorer').length > 0",
            timeout=300_000,
        )
        page.wait_for_timeout(1000)
        no_traceback(page)
        assert page.problems == [], page.problems
