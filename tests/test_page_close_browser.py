"""Closing the page in the middle of a run stops the run: nothing keeps computing for a user
who has gone (explorer/app/lifetime.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser import browser_page, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def test_closing_the_page_mid_run_stops_its_run():
    with serving() as server, browser_page() as page:
        page.goto(server.url, timeout=120_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Resample') && !b.disabled)",
            timeout=120_000,
        )
        ours = {k.pid for k in server.kernels()}  # the page's kernel: this server's, not another test's
        page.locator("input[type=number]").first.fill("4096")
        page.locator("input[type=number]").first.press("Tab")
        page.get_by_role("button", name="Resample").click()
        page.get_by_text("Run or Cancel?").wait_for(timeout=60_000)  # 5 × 4096 samples: it asks first
        page.get_by_role("button", name="Run").click()
        page.get_by_role("button", name="Stop").first.wait_for(timeout=30_000)  # the Sampling panel's (the Discover and Amplify tabs have their own)
        time.sleep(3)
        start = {p: cpu_seconds(p) for p in ours}
        time.sleep(1)
        used = {p: cpu_seconds(p) - start[p] for p in ours}
        pid = max(used, key=used.get)
        assert used[pid] > 0.5, used  # the page's kernel is sampling
        page.close(run_before_unload=True)
        closed = time.monotonic()
        while time.monotonic() - closed < 75:  # heartbeats stop; within ~30 s the run is cancelled
            start = cpu_seconds(pid)
            time.sleep(2)
            if cpu_seconds(pid) - start < 0.2:
                break
        assert cpu_seconds(pid) - start < 0.2, "the kernel kept sampling for a closed page"
        print(f"\nrun stopped {time.monotonic() - closed:.0f} s after its page closed")
