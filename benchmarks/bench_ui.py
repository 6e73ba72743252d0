"""UI latency in the real thing: `family-explorer` (Voila) driven by headless Chromium.

Reports page-load-to-interactive (navigation until Resample can be clicked) and
click-to-charts (Resample click until every response column is filled and the variability
charts have redrawn) for fable with 3 models × 16 samples × 24 tokens. Median of --repeats.

    python benchmarks/bench_ui.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import browser_page, served  # noqa: E402

READY = "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Resample') && !b.disabled)"
MARK_OLD = "() => document.querySelectorAll('.vega-embed').forEach(e => e.dataset.old = '1')"
FRESH = """() => document.querySelectorAll('.fx-responses select').length === 3 &&
  [...document.querySelectorAll('.fx-responses select')].every(s => s.options.length === 16) &&
  [...document.querySelectorAll('.vega-embed')].filter(e => !e.dataset.old && e.offsetParent !== null
     && e.querySelector('canvas, svg')).length >= 3"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    loads, clicks = [], []
    with served() as url, browser_page(height=1400) as page:
        for _ in range(args.repeats):  # each visit a fresh page (and so a fresh Voila kernel)
            fresh = page.context.new_page()
            start = time.perf_counter()
            fresh.goto(url, timeout=300_000)
            fresh.wait_for_function(READY, timeout=300_000)
            loads.append(time.perf_counter() - start)
            fresh.close()
        page.goto(url, timeout=300_000)
        page.wait_for_function(READY, timeout=300_000)
        members = ["fable-cheerful — fine-tune", "fable-pirate — LoRA adapter"]
        page.locator(".widget-select-multiple select").select_option(label=members)
        page.get_by_role("tab", name="Variability").click()
        seed = page.locator("input[type=number]").nth(5)
        for i in range(args.repeats):
            page.evaluate(MARK_OLD)
            seed.fill(str(100 + i))
            seed.press("Tab")
            start = time.perf_counter()
            page.get_by_role("button", name="Resample").click()
            page.wait_for_function(FRESH, timeout=120_000)
            clicks.append(time.perf_counter() - start)
            page.wait_for_function(READY, timeout=120_000)
        problems = list(page.problems)
    print(
        "\n| measure (fable, 3 models × 16 samples × 24 tokens) | median (s) | min (s) | max (s) |"
    )
    print("|---|---|---|---|")
    for name, values in (
        ("page load to interactive", loads),
        ("Resample click to charts drawn", clicks),
    ):
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    if problems:
        print("\nbrowser problems:", *problems[:5], sep="\n")


if __name__ == "__main__":
    main()
