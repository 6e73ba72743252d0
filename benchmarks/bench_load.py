"""Load test: 5 concurrent Voila sessions on fable in headless Chromium, each resampling 3
times, against the same 15 resamples one after another in one session. Reports whether all
finished without error, the resampling time of each (from the first click, once every page is
ready, to the last result: page loads are not counted), their ratio, and the server's peak
memory (Voila plus its kernels, summed RSS, sampled every 0.2 s). Loopback only; bounded in
count and time.

    python benchmarks/bench_load.py [--sessions 5] [--resamples 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import CHROMIUM, CHROMIUM_ARGS, served  # noqa: E402

from explorer.zoo import MEMBERS  # noqa: E402

READY = "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Resample') && !b.disabled)"
FILLED = f"() => document.querySelectorAll('.fx-responses select').length === {len(MEMBERS)}"  # a column each


def server_rss_mb(root: int) -> float:
    """Summed RSS of the Voila server started by `root` and of its kernels (not of Chromium)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    voila = [pid for pid in children.get(root, []) if b"voila" in _cmdline(pid)]
    total, stack = 0.0, voila
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def session(browser, url: str, resamples: int, errors: list[str], ready: asyncio.Barrier, spans: list) -> None:
    """One participant: open the app, wait for the others, resample `resamples` times with
    fresh seeds; `spans` gets (first click, last result) in perf_counter seconds."""
    ctx = await browser.new_context()
    page = await ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(url, timeout=600_000)
    await page.wait_for_function(READY, timeout=600_000)
    seed = page.locator("input[type=number]").nth(5)
    await ready.wait()
    start = time.perf_counter()
    for r in range(resamples):
        await seed.fill(str(1000 + r))
        await seed.press("Tab")
        await page.get_by_role("button", name="Resample").click()
        await page.wait_for_timeout(300)
        await page.wait_for_function(READY, timeout=600_000)
        await page.wait_for_function(FILLED, timeout=600_000)
    spans.append((start, time.perf_counter()))
    if "Traceback" in await page.inner_text("body"):
        errors.append("traceback on page")
    await ctx.close()


async def drive(url: str, sessions: int, resamples: int, errors: list[str]) -> float:
    """Seconds from the first click to the last result, over all sessions."""
    from playwright.async_api import async_playwright

    spans: list[tuple[float, float]] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        ready = asyncio.Barrier(sessions)
        await asyncio.gather(*(session(browser, url, resamples, errors, ready, spans) for _ in range(sessions)))
        await browser.close()
    return max(end for _, end in spans) - min(start for start, _ in spans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--resamples", type=int, default=3)
    args = parser.parse_args()
    with served(timeout=120) as url:
        peak, stop = [0.0], threading.Event()

        def watch() -> None:  # the server is a child of this process; Chromium is not counted
            while not stop.is_set():
                peak[0] = max(peak[0], server_rss_mb(os.getpid()))
                time.sleep(0.2)

        threading.Thread(target=watch, daemon=True).start()
        errors: list[str] = []
        total = args.sessions * args.resamples
        serial = asyncio.run(drive(url, 1, total, errors))
        concurrent = asyncio.run(drive(url, args.sessions, args.resamples, errors))
        stop.set()
    print(f"\n| resamples | concurrent: {args.sessions} sessions × {args.resamples} (s) | serial: 1 session × {total} (s) "
          "| concurrent / serial | all finished | errors | server peak memory (MB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print(f"| {total} | {concurrent:.1f} | {serial:.1f} | {concurrent / serial:.2f}× | {'yes' if not errors else 'no'} "
          f"| {len(errors)} | {peak[0]:.0f} |")  # fmt: skip
    if errors:
        print("\n".join(errors[:10]))


if __name__ == "__main__":
    main()
