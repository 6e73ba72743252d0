"""The Binder set-up is well-formed: a CPU torch, this package installed, a Python it supports."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def test_requirements_pin_a_cpu_torch():
    lines = [
        ln.strip()
        for ln in (BINDER / "requirements.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert any(
        re.fullmatch(r"--extra-index-url https://download\.pytorch\.org/whl/cpu", ln)
        for ln in lines
    )
    pins = [ln for ln in lines if ln.startswith("torch")]
    constraints = (ROOT / "constraints-cpu.txt").read_text()
    assert len(pins) == 1 and pins[0] in constraints.splitlines()


def test_post_build_installs_this_package():
    post = BINDER / "postBuild"
    assert os.access(post, os.X_OK)
    text = post.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert re.search(r"pip install .*-c constraints-cpu\.txt \.$", text, re.M)


def test_runtime_is_a_supported_python():
    version = (BINDER / "runtime.txt").read_text().strip()
    major, minor = map(int, re.fullmatch(r"python-(\d+)\.(\d+)", version).groups())
    assert (major, minor) >= (3, 10)


def test_readme_links_the_binder_app():
    readme = (ROOT / "README.md").read_text()
    assert "urlpath=voila/render/notebooks/explorer.ipynb" in readme
