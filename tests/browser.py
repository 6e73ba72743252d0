"""Helpers to serve a notebook with `family-explorer` and drive it in headless Debian Chromium."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
# Voila's page asks a CDN for Font Awesome; offline that fails twice, harmlessly. Nothing else
# may fail.
HARMLESS = ("font-awesome", "fontawesome", "cdnjs.cloudflare.com")
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(notebook: str | None = None, timeout: float = 90):
    """`family-explorer [notebook] --no-browser` on a free port; yields the base URL."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "explorer.cli",
        *([notebook] if notebook else []),
        "--no-browser",
        f"--port={port}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_until_up(url, proc, log, timeout)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_until_up(url: str, proc: subprocess.Popen, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"family-explorer did not start:\n{log.read().decode()[-3000:]}")
            time.sleep(0.3)


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    """A fresh headless Chromium page that records console errors, page errors and dialogs."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="fx-chromium-")
    problems: list[str] = []
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": width, "height": height},
            )  # fmt: skip
            page = ctx.new_page()
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console: {m.text}")
                    if m.type == "error" and not _harmless(m.text, m.location)
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.problems = problems
            try:
                yield page
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _harmless(text: str, location: dict | None) -> bool:
    where = f"{text} {(location or {}).get('url', '')}".lower()
    return any(h in where for h in HARMLESS)


def no_traceback(page) -> None:
    body = page.inner_text("body")
    assert "Traceback" not in body, body[:2000]
    assert "There was an error when executing cell" not in body, body[:2000]


def screenshot(page, name: str, selector: str | None = None) -> Path:
    """A PNG of the page (or of one element, cropped to it) under test-output/."""
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / name
    if selector:
        page.locator(selector).first.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path
