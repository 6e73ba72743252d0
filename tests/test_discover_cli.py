"""`family-explorer discover` from the command line: it resumes after a kill to the same result
as a run that was never interrupted, refuses to mix runs, and its report opens offline with the
Discover section."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from browser import browser_page
from test_report_browser import open_offline

import explorer as fx

pytestmark = pytest.mark.slow
PROMPTS = ["the weather today is", "the traveller said", "the capital of sylvane is",
           "once upon a time a fox went to the river . it ended", "the capital of tirnova is"]  # fmt: skip


def command(prompts, out, *extra) -> list[str]:
    return [sys.executable, "-m", "explorer.cli", "discover", "--family", "fable", "--prompts", str(prompts),
            "--n", "4", "--confirm", "32", "--max-new-tokens", "8", "--out", str(out), "--quiet", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


@pytest.fixture(scope="module")
def whole(prompt_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    done = subprocess.run(command(prompt_file, out, "--report"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_a_killed_run_resumes_to_the_same_discovery(prompt_file, whole, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(command(prompt_file, out), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list((out / "units").glob("discover-*.json"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    kept = len(list((out / "units").glob("*.json")))
    assert 2 <= kept < 2 * len(PROMPTS) and not list((out / "units").glob("*.tmp"))
    done = subprocess.run(command(prompt_file, out), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = fx.Discovery.load(whole / "discovery.json"), fx.Discovery.load(out / "discovery.json")
    for name in ("df", "words", "candidates", "findings"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_dtype=False)
    assert set(pd.read_csv(out / "findings.csv")["behaviour"]) == set(a.findings["behaviour"])


def test_a_folder_with_another_run_is_refused(fable, whole):
    with pytest.raises(ValueError, match="holds a discover run with other prompts, params, confirm"):
        fx.discover(fable, PROMPTS[:2], n=4, n_confirm=32, max_new_tokens=8, seed=1, out=whole)
    assert len(fx.Discovery.load(whole / "discovery.json").prompts) == len(PROMPTS)  # nothing written over


@pytest.mark.browser
def test_the_report_opens_offline_with_the_discover_section(whole):
    with browser_page(width=1280, height=900) as page:
        refused = open_offline(page, whole / "report.html")
        page.wait_for_function("() => document.querySelectorAll('.chart svg').length === 2", timeout=60_000)
        text = page.inner_text("body")
        assert "Discovered behaviours, labelled on fresh samples" in text and "“ahoy”" in text
        assert refused == [] and page.problems == [], (refused, page.problems)
