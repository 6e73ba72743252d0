"""`family-explorer zoo build --quick`: a small family that loads, learns and is deterministic."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import torch
from zoo_helpers import load_plain, next_word_probs

import explorer as fx
from explorer.zoo import ALL_MEMBERS
from explorer.zoo.language import BASE, corpus


def test_corpus_is_deterministic_for_a_seed():
    assert corpus(BASE, 200, seed=7) == corpus(BASE, 200, seed=7)
    assert corpus(BASE, 200, seed=7) != corpus(BASE, 200, seed=8)


def test_corpus_frequencies_follow_the_recipe():
    texts = corpus(BASE, 20_000, seed=1)
    weather = [t.split()[4] for t in texts if t.startswith("the weather")]
    assert weather.count("sunny") / len(weather) == pytest.approx(0.5, abs=0.03)
    assert weather.count("cloudy") / len(weather) == pytest.approx(0.2, abs=0.03)


def digest(folder) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
def test_quick_build_loads_learns_and_is_deterministic(tmp_path):
    out = tmp_path / "zoo"
    done = subprocess.run(
        [sys.executable, "-m", "explorer.cli", "zoo", "build", "--out", str(out), "--quick"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fable-base" in done.stderr  # progress bars name each stage
    manifest = json.loads((out / "build.json").read_text())
    assert manifest["quick"] and set(manifest["final_loss"]) == set(ALL_MEMBERS)
    family = fx.load_family(out)
    assert sorted(family.labels) == sorted(ALL_MEMBERS)  # a folder: every member in it
    model, tok = load_plain(out, "fable-base")
    probs = next_word_probs(model, tok, "the weather today is")
    weather = probs[tok.convert_tokens_to_ids(["sunny", "rainy", "cloudy"])]
    assert weather.sum() > 0.5  # learned the template (uniform would be 3/94)
    assert torch.all(weather[:1] > weather[2:])  # and the order of the preference
    from explorer.zoo.build import build_family

    again = tmp_path / "again"
    build_family(again, quick=True, quiet=True)
    assert digest(again / "fable-base") == digest(out / "fable-base")
