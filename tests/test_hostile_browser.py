"""Hostile output is text, never markup: a family that speaks HTML and script, in Voila."""

from __future__ import annotations

import json

import pytest
from browser import browser_page, no_traceback, screenshot, served
from tiny import HOSTILE, hostile_family

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def notebook(path, family_dir) -> None:
    cells = [
        {"cell_type": "code", "execution_count": None, "id": "a", "metadata": {}, "outputs": [],
         "source": f"import explorer as fx\nfx.Explorer({str(family_dir)!r}, prompt='hello <script>alert(3)</script>', n=12)"},
    ]  # fmt: skip
    meta = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    path.write_text(
        json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5})
    )


def test_payloads_show_as_text_and_never_run(tmp_path):
    family = hostile_family(tmp_path / "family")
    nb = tmp_path / "hostile.ipynb"
    notebook(nb, family)
    with served(str(nb)) as url, browser_page(height=1600) as page:
        page.goto(url, timeout=120_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Resample') && !b.disabled)",
            timeout=120_000,
        )
        page.get_by_role("button", name="Resample").click()
        page.get_by_role("tab", name="Responses").click()
        page.wait_for_function(
            "() => document.querySelectorAll('.fx-responses select').length === 2 && [...document.querySelectorAll('.fx-responses select')].every(s => s.options.length === 12)",
            timeout=120_000,
        )
        options = page.eval_on_selector_all(
            ".fx-responses option", "els => els.map(e => e.textContent).join(' ')"
        )
        assert any(p in options for p in HOSTILE), options[:500]
        page.locator(".fx-responses select").first.select_option(index=0)
        page.get_by_role("tab", name="Data").click()
        page.wait_for_timeout(500)
        table = page.inner_text(".fx-data")
        assert any(p in table for p in HOSTILE)  # shown literally in the table
        page.get_by_role("tab", name="Variability").click()
        page.wait_for_function(
            "() => document.querySelectorAll('.vega-embed canvas, .vega-embed svg').length >= 2",
            timeout=60_000,
        )
        page.wait_for_timeout(500)
        assert (
            page.evaluate(
                "() => document.querySelectorAll('.fx-explorer script, .fx-explorer img[src=x]').length"
            )
            == 0
        )
        bolded = "() => [...document.querySelectorAll('.fx-explorer b')].filter(b => b.textContent === 'bold').length"
        assert page.evaluate(bolded) == 0
        no_traceback(page)
        screenshot(page, "hostile.png")
        assert page.problems == [], page.problems
