"""Sweeps from the command line: files, resume after SIGINT, refusal to mix runs, load_sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import explorer as fx

PROMPTS = ["the weather today is", "the traveller said", "once upon a time a fox went to the river . it ended",
           "the capital of zorbia is", "the weather today is sunny"]  # fmt: skip


def sweep_cmd(prompts, out, n=6, extra=()):
    return [sys.executable, "-m", "explorer.cli", "sweep", "--family", "fable", "--prompts", str(prompts),
            "--n", str(n), "--max-new-tokens", "12", "--seed", "3", "--out", str(out), *extra]  # fmt: skip


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.csv"
    pd.DataFrame({"prompt": PROMPTS, "behaviour:sunny": [r"\bsunny\b", "", "", "", ""]}).to_csv(
        path, index=False
    )
    return path


@pytest.mark.slow
def test_sweep_writes_the_tables(prompt_file, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        sweep_cmd(prompt_file, out, extra=["--quiet", "--report"]), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    page = (out / "report.html").read_text()
    assert "Labels across the prompt set" in page and "vegaEmbed" not in page  # a table page, no charts
    data = fx.load_sweep(out)
    assert len(data["samples"]) == len(PROMPTS) * 6 * 6  # six models, six samples each
    assert len(data["variability"]) == len(PROMPTS) * 6
    assert set(data["samples"]["prompt_index"]) == set(range(len(PROMPTS)))
    prov = data["provenance"]
    assert set(prov[prov["prompt_index"] == 0]["behaviour"]) == {"sunny"}
    for name in ("variability.csv", "provenance.csv", "samples.parquet", "manifest.json"):
        assert (out / name).is_file()
    assert data["manifest"]["params"]["n"] == 6 and "torch" in data["manifest"]["versions"]


@pytest.mark.slow
def test_interrupted_sweep_resumes_to_the_same_samples(prompt_file, tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(
        sweep_cmd(prompt_file, whole, extra=["--quiet"]),
        check=True,
        capture_output=True,
        timeout=600,
    )
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        sweep_cmd(prompt_file, out, n=6, extra=["--quiet"]), stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while len(list((out / "units").glob("*.json"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, (
            "the sweep ended before it could be interrupted"
        )
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    assert proc.returncode == 130, proc.stderr.read()
    finished = len(list((out / "units").glob("*.json")))
    assert 3 <= finished < len(PROMPTS) * 5
    assert not any(p.name.endswith(".tmp") for p in (out / "units").iterdir())
    subprocess.run(
        sweep_cmd(prompt_file, out, extra=["--quiet"]), check=True, capture_output=True, timeout=600
    )
    a, b = fx.load_sweep(whole)["samples"], fx.load_sweep(out)["samples"]
    cols = ["model", "sample", "prompt", "text", "token_ids", "logprobs"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_changing_n_on_resume_is_refused(prompt_file, tmp_path):
    out = tmp_path / "run"
    (out / "units").mkdir(parents=True)
    from explorer.core.params import SamplingParams
    from explorer.core.sweep import manifest_for, read_prompts

    family = fx.load_family("fable")
    manifest = manifest_for(
        family, read_prompts(prompt_file), SamplingParams(n=6, max_new_tokens=12, seed=3), None
    )
    import json

    (out / "manifest.json").write_text(json.dumps(manifest))
    done = subprocess.run(sweep_cmd(prompt_file, out, n=7), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert done.returncode == 2
    assert "n was 6, now 7" in done.stderr


def test_bad_prompt_files(tmp_path):
    from explorer.core.sweep import read_prompts

    with pytest.raises(ValueError, match="^prompts: no file"):
        read_prompts(tmp_path / "missing.txt")
    bad = tmp_path / "p.csv"
    bad.write_text("text\nhello\n")
    with pytest.raises(ValueError, match="needs a 'prompt' column"):
        read_prompts(bad)
    txt = tmp_path / "p.txt"
    txt.write_text("one\n\ntwo\n")
    assert [p.prompt for p in read_prompts(txt)] == ["one", "two"]


@pytest.mark.slow
def test_a_sweep_file_with_a_hostile_behaviour_finishes_and_says_which(tmp_path):
    """A catastrophic pattern in a sweep file is left out with a sentence (stderr and the
    manifest); an invalid one fails before any sampling, naming the file and row."""
    from bad_inputs import HOSTILE

    hostile = HOSTILE[-1][1]  # backtracks on any answer of a dozen characters or more
    path = tmp_path / "hostile.csv"
    pd.DataFrame({"prompt": PROMPTS[1:3], "behaviour:odd": [hostile, hostile], "behaviour:the": [r"\bthe\b"] * 2}).to_csv(path, index=False)
    out = tmp_path / "run"
    done = subprocess.run(sweep_cmd(path, out, n=4, extra=["--quiet"]), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    left_out = fx.load_sweep(out)["manifest"]["behaviours_left_out"]
    assert left_out and all("took more than" in v for v in left_out.values())
    prov = fx.load_sweep(out)["provenance"]
    for where in left_out:  # "prompt 2: odd": that prompt's table counts "the" only
        index = int(where.split(":")[0].split()[1]) - 1
        assert set(prov[prov["prompt_index"] == index]["behaviour"]) == {"the"}
        assert f"{where}: behaviour 'odd': the pattern" in done.stderr
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"prompt": PROMPTS[:2], "behaviour:x": ["", "((a{1000}){1000}){1000}"]}).to_csv(bad, index=False)
    done = subprocess.run(sweep_cmd(bad, tmp_path / "bad-run", n=4), capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "bad.csv, row 2: behaviours: 'x' repeats into 1,000,000,000 copies" in done.stderr
    assert not (tmp_path / "bad-run" / "units").exists()
