"""The app's page asks nothing of any server but its own, and the first visitor gets the kernel
`family-explorer` kept warm.

Voila's page template linked Font Awesome's CSS on a public CDN: every visit made two requests
that failed offline and told a third party who opened the demo. `family-explorer` serves its
own template without them (explorer/jupyter/voila/templates/fx); the icons draw from the Font
Awesome that Voila's bundle already carries.
"""

from __future__ import annotations

import pytest
from browser import browser_page, host_port, no_traceback, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]
READY = "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Resample') && !b.disabled)"
# The Resample button's icon: its glyph, the font it is drawn with, and whether that font loaded
ICON = """() => { const i = [...document.querySelectorAll('button')].find(b => b.innerText.includes('Resample')).querySelector('i');
  const s = getComputedStyle(i, '::before');
  return { glyph: s.content, font: s.fontFamily, width: i.getBoundingClientRect().width,
           loaded: [...document.fonts].some(f => f.family.includes('Font Awesome') && f.status === 'loaded') }; }"""


def test_a_page_load_and_a_resample_ask_only_the_pages_own_server():
    with serving(preheat=None) as server, browser_page() as page:  # the CLI's default: one kept
        page.goto(server.url, timeout=120_000)
        page.wait_for_function(READY, timeout=120_000)
        page.locator("input[type=number]").first.fill("4")
        page.locator("input[type=number]").first.press("Tab")
        page.get_by_role("button", name="Resample").click()
        page.locator(".fx-cell").first.wait_for(timeout=120_000)  # the findings are drawn
        page.get_by_role("tab", name="Variability").click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.vega-embed svg')].filter(e => e.offsetParent !== null).length >= 3",
            timeout=60_000,
        )
        icon = page.evaluate(ICON)
        no_traceback(page)
        own = host_port(server.url)
        outside = [url for url in page.requests if host_port(url) not in ("", own)]
        assert len(page.requests) > 50, page.requests  # the recorder saw the page's own files
        assert any(url.startswith("ws://") for url in page.requests)  # and the kernel's socket
        assert outside == [], outside
        assert page.problems == [], page.problems
        assert icon["glyph"] not in ("none", "normal", "") and "Font Awesome" in icon["font"], icon
        assert icon["loaded"] and icon["width"] > 5, icon  # the glyph drew, from our server
        assert "Using pre-heated kernel" in server.log_text()  # the visitor got the warm kernel
