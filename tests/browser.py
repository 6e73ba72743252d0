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
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running `family-explorer`: its URL, its process (Voila; the kernels are its children)
    and its log so far."""

    url: str
    proc: subprocess.Popen
    log: IO[bytes]

    def log_text(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def kernels(self) -> list:
        """The server's kernel processes (psutil), pre-started ones included."""
        import psutil

        children = psutil.Process(self.proc.pid).children(recursive=True)
        return [k for k in children if any("ipykernel" in part for part in k.cmdline())]

    def settle(self, kernels: int = 1, quiet_s: float = 1.5, timeout: float = 120) -> None:
        """Wait until `kernels` kernels run and none used CPU for `quiet_s`: a pre-started
        kernel has run its notebook and loaded its family."""
        deadline, quiet_since, last = time.monotonic() + timeout, None, None
        while time.monotonic() < deadline:
            procs = self.kernels()
            try:
                used = sum(sum(k.cpu_times()[:2]) for k in procs)
            except Exception:  # a kernel went away while we looked
                used = None
            if len(procs) >= kernels and used is not None and last is not None and used - last < 0.05:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= quiet_s:
                    return
            else:
                quiet_since = None
            last = used
            time.sleep(0.25)
        pytest.fail(f"the server's kernels did not settle within {timeout} s:\n{self.log_text()[-3000:]}")


@contextlib.contextmanager
def serving(notebook: str | None = None, timeout: float = 90, preheat: int | None = 0):
    """`family-explorer [notebook] --no-browser --preheat K` on a free port; yields the `Server`.

    Tests keep no kernel ready by default (K = 0): one kernel per test, the page's own. A kept
    one is refilled a second after the visit and runs the notebook again behind the test, for
    nobody (about 6 s more per test on two cores). `preheat=None` serves the CLI's default
    (tests/test_offline_browser.py)."""
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
        *([f"--preheat={preheat}"] if preheat is not None else []),  # None: the CLI's default
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_until_up(url, proc, log, timeout)
            yield Server(url, proc, log)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def served(notebook: str | None = None, timeout: float = 90, preheat: int | None = 0):
    """`serving`, yielding only the base URL."""
    with serving(notebook, timeout, preheat) as server:
        yield server.url


def wait_until_up(url: str, proc: subprocess.Popen, log, timeout: float) -> None:
    """Until the server answers at all. It asks a path that starts no kernel (any HTTP status
    will do): getting the page itself would run the notebook for nobody and take the kernel
    kept warm for the first visitor."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url + "voila/api/themes/up", timeout=2)
            return
        except urllib.error.HTTPError:
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
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.requests = []  # every URL the page asked for, web sockets included
            for event in ("request", "websocket"):
                page.on(event, lambda r: _record(r.url, page.requests, problems))
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.problems = problems
            try:
                yield page
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _record(url: str, requests: list[str], problems: list[str]) -> None:
    """Keep the URL; one to a host off this machine (a CDN, a tracker) is a problem: the app
    works offline and tells no third party who opened it."""
    requests.append(url)
    if host_port(url) and host_port(url).rsplit(":", 1)[0] not in LOOPBACK:
        problems.append(f"request outside this machine: {url}")


def host_port(url: str) -> str:
    """`host:port` a request goes to ('' for data: URLs and files; a blob: URL belongs to the
    page that made it)."""
    parts = urllib.parse.urlsplit(url.removeprefix("blob:"))
    if parts.scheme not in ("http", "https", "ws", "wss"):
        return ""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"{host}:{parts.port or (443 if parts.scheme in ('https', 'wss') else 80)}"


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


@contextlib.contextmanager
def told_on_failure(page, server: Server, name: str):
    """When the block fails: a screenshot `name`, and what the page and the server's log (the
    kernel's warnings among them) said, printed for the test's report."""
    try:
        yield
    except Exception:
        screenshot(page, name)
        print(page.inner_text("body")[-6000:], "\n--- the server's log ---\n", server.log_text()[-4000:])
        raise


ASKED = "document.body.innerText.includes('Run or Cancel?')"


def press_and_run_if_asked(page, button, done: str, timeout: float = 240_000) -> None:
    """Click `button` and wait for `done` (a JS function's source), pressing Run if the app asks
    first: it asks when its estimate passes 8 s, which a busy machine (another test worker, a
    build) can make true of work that takes 2 s when idle."""
    button.click()
    page.wait_for_function(f"() => ({done})() || {ASKED}", timeout=timeout)
    if not page.evaluate(done):
        page.get_by_role("button", name="Run", exact=False).first.click()
        page.wait_for_function(done, timeout=timeout)
