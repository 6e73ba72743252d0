"""UI latency in the real thing: `family-explorer` (Voila) driven by headless Chromium.

Reports the first visitor's page load to usable (navigation until Resample can be clicked), in
a fresh browser against a fresh idle server: cold (`--preheat 0`: the kernel starts on request)
and warm (the default, one kernel started ahead and settled), alternating; with its phases
(HTML's first byte, the page streamed — the notebook has run —, the app drawn) and the memory of the kept kernel. Then
click-to-charts (Resample click until every response column is filled, the new findings are
drawn and the variability charts have redrawn) for fable with 3 models × 16 samples × 24 tokens. Median of --repeats.
With --real: the real SmolLM2 family (2 models × 16 × 24), each click alternating with a bare
`generate` of the same work in this process, and the ratio of the medians.

    python benchmarks/bench_ui.py [--repeats 5] [--real]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import browser_page, served, serving  # noqa: E402

DRAWN = "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Resample'))"
READY = "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Resample') && !b.disabled)"
# A redrawn chart keeps its container and its SVG element (vega updates it in place): a chart
# counts as redrawn when its drawing's content differs from the one marked before the click.
HASH = "(t => [...t].reduce((h, c) => (h * 31 + c.charCodeAt(0)) | 0, 0))"
MARK_OLD = (f"() => {{ document.querySelectorAll('.vega-embed svg.marks').forEach(e => e.dataset.old = {HASH}(e.innerHTML)); "
            "document.querySelectorAll('.fx-cell').forEach(e => e.dataset.old = '1'); }")  # fmt: skip
FRESH = f"""() => document.querySelectorAll('.fx-responses select').length === 3 &&
  [...document.querySelectorAll('.fx-responses select')].every(s => s.options.length === 16) &&
  [...document.querySelectorAll('.vega-embed svg.marks')].filter(e => e.offsetParent !== null
     && e.dataset.old !== String({HASH}(e.innerHTML))).length >= 3 &&
  document.querySelectorAll('.fx-cell:not([data-old])').length >= 2"""  # the new findings too


def fresh_charts(columns: int, n: int) -> str:
    return FRESH.replace("length === 3", f"length === {columns}").replace("length === 16", f"length === {n}")


def real_notebook(folder: Path) -> Path:
    """A notebook that opens the real family, 16 samples × 24 tokens, chat template on."""
    import json

    from real_family import family_dir

    source = f"import explorer as fx\nfx.Explorer({str(family_dir())!r}, n=16, max_new_tokens=24, prompt='Tell me about the moon.', confirm_after=1e9)"
    cells = [{"cell_type": "code", "execution_count": None, "id": "a", "metadata": {}, "outputs": [], "source": source}]
    meta = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    path = folder / "real.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}))
    return path


def bare_work():
    """Sampling the same work with bare `generate`: 16 × 24 tokens from each real member."""
    import torch
    from real_family import family_dir

    import explorer as fx
    from explorer.core.member import encode_prompt, model_input

    family = fx.load_family(family_dir())
    members = [family.load(label) for label in family.labels]

    def run() -> float:
        start = time.perf_counter()
        for m in members:
            ids = encode_prompt(m, model_input(m, "Tell me about the moon.", "auto"), 24)
            with torch.no_grad():
                m.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                                 max_new_tokens=24, num_return_sequences=16, pad_token_id=m.tokenizer.pad_token_id)  # fmt: skip
        return time.perf_counter() - start

    return run


def real(repeats: int) -> None:
    import tempfile

    bare = bare_work()
    bare()  # warm-up
    clicks, bares = [], []
    with tempfile.TemporaryDirectory() as tmp, served(str(real_notebook(Path(tmp))), timeout=300) as url, \
            browser_page(height=1400) as page:  # fmt: skip
        page.goto(url, timeout=300_000)
        page.wait_for_function(READY, timeout=300_000)
        page.get_by_role("tab", name="Variability").click()
        seed = page.locator("input[type=number]").nth(5)
        for i in range(repeats + 1):
            page.evaluate(MARK_OLD)
            seed.fill(str(200 + i))
            seed.press("Tab")
            start = time.perf_counter()
            page.get_by_role("button", name="Resample").click()
            page.wait_for_function(fresh_charts(2, 16), timeout=300_000)
            elapsed = time.perf_counter() - start
            print(f"click {i}: {elapsed:.2f} s", flush=True)
            page.wait_for_function(READY, timeout=300_000)
            if i:  # the first click warms the kernel's models up
                clicks.append(elapsed)
                bares.append(bare())
        problems = list(page.problems)
    ratio = statistics.median(clicks) / statistics.median(bares)
    print("\n| measure (SmolLM2 family, 2 models × 16 samples × 24 tokens) | median (s) | min (s) | max (s) |")
    print("|---|---|---|---|")
    for name, values in (("Resample click to charts drawn", clicks), ("bare generate of the same work", bares)):
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    print(f"\nclick-to-charts / bare generate: {ratio:.2f}×")
    if problems:
        print("\nbrowser problems:", *problems[:5], sep="\n")


def first_visit(preheat: int) -> dict[str, float]:
    """One first visitor on a fresh, settled server: seconds from navigation to each phase."""
    with serving(preheat=preheat, timeout=120) as server:
        server.settle(kernels=preheat)
        kept = [k.memory_full_info() for k in server.kernels()]  # the kept kernel (warm runs)
        rss, uss = (sum(getattr(m, field) for m in kept) / 2**20 for field in ("rss", "uss"))
        with browser_page(height=1400) as page:
            start = time.perf_counter()
            page.goto(url := server.url, timeout=300_000, wait_until="commit")
            first_byte = time.perf_counter() - start
            page.wait_for_load_state("domcontentloaded", timeout=300_000)  # the notebook has run
            streamed = time.perf_counter() - start
            page.wait_for_function(DRAWN, timeout=300_000, polling=50)
            drawn = time.perf_counter() - start
            page.wait_for_function(READY, timeout=300_000, polling=50)
            usable = time.perf_counter() - start
            if page.problems:
                print(f"browser problems at {url}:", *page.problems[:5], sep="\n")
        used = "Using pre-heated kernel" in server.log_text()
        if preheat and not used:
            print("warning: the warm visit did not get the pre-started kernel")
    return {"first byte": first_byte, "page streamed": streamed, "app drawn": drawn, "usable": usable, "kept RSS MB": rss, "kept USS MB": uss}


def first_visits(repeats: int) -> None:
    """Cold and warm first visits, alternating; medians (min–max)."""
    runs: dict[str, list[dict[str, float]]] = {"cold": [], "warm": []}
    for i in range(repeats):
        for kind, preheat in (("cold", 0), ("warm", 1)):
            runs[kind].append(first_visit(preheat))
            print(f"{kind} {i}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[kind][-1].items())
                  + f" (load average {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
    print(f"\n| first visit (fable, fresh browser, idle server; {repeats} alternating runs) "
          "| HTML first byte (s) | page streamed (s) | app drawn (s) | usable (s) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for kind, label in (("cold", "cold: `--preheat 0`"), ("warm", "warm: one kernel kept (default)")):
        cells = []
        for phase in ("first byte", "page streamed", "app drawn", "usable"):
            values = [r[phase] for r in runs[kind]]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})")
        print(f"| {label} | " + " | ".join(cells) + " |")
    rss, uss = ([r[f"kept {m} MB"] for r in runs["warm"]] for m in ("RSS", "USS"))
    print(f"\nthe kept kernel, idle with fable loaded: resident {statistics.median(rss):.0f} MB "
          f"({min(rss):.0f}–{max(rss):.0f}), of which its own (USS, not shared with other "
          f"processes) {statistics.median(uss):.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--real", action="store_true", help="the real SmolLM2 family instead of fable")
    parser.add_argument("--visits-only", action="store_true", help="only the cold and warm first visits")
    args = parser.parse_args()
    if args.real:
        real(args.repeats)
        return
    first_visits(args.repeats)
    if args.visits_only:
        return
    clicks = []
    with served() as url, browser_page(height=1400) as page:
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
    for name, values in (("Resample click to charts drawn", clicks),):
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    if problems:
        print("\nbrowser problems:", *problems[:5], sep="\n")


if __name__ == "__main__":
    main()
