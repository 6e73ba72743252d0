"""The HTML report: a self-contained file of a session or a sweep, hostile text kept as text."""

from __future__ import annotations

import re

import pytest
from tiny import HOSTILE, hostile_family

import explorer as fx
from explorer.core.store import ModelStore


@pytest.fixture(scope="module")
def fable_session(fable):
    samples = fx.sample(fable, "the weather today is", n=16, max_new_tokens=24, seed=0)
    attr = fx.attribute(fable, samples.prompt, samples.texts("fable-pirate")[0], method="grad_x_input")
    return fx.Session(fable.to_dict(), samples, {"sunny": r"\bsunny\b"}, attr, ("fable-pirate", 0))


def test_a_fable_session_report_holds_everything_inline_and_stays_small(fable_session, tmp_path):
    path = fx.report(fable_session, tmp_path / "weather.html")
    text = path.read_text()
    size = path.stat().st_size
    print(f"\nreport of 5 models × 16 × 24 with attribution: {size / 1e6:.2f} MB")
    assert size < 3_000_000
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://cdn" not in text  # nothing fetched
    assert "vegaEmbed" in text and text.count("class='chart'") >= 6
    for piece in ("fable-cheerful amplified “sunny”", "the weather today is", "fable-pirate", "Library versions", "&quot;seed&quot;: 0"):
        assert piece in text, piece
    assert "LoRA" in text or "adapter" in text  # the cards' summaries and relations
    again = fable_session.report(tmp_path / "again.html")
    assert again.stat().st_size == pytest.approx(size, rel=0.01)


def test_hostile_text_is_text_in_the_report(tmp_path):
    family = fx.load_family(str(hostile_family(tmp_path / "family")), store=ModelStore())
    samples = fx.sample(family, "hello <script>alert(3)</script>", n=12, max_new_tokens=6, seed=0)
    path = fx.report(samples, tmp_path / "hostile.html")
    text = path.read_text()
    body = re.sub(r"<script>.*?</script>", "", text, flags=re.S)  # the inline libraries
    assert "<script>alert" not in body and "<img/src=x" not in body
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in text  # the prompt, literally
    assert any(x in samples.df["text"].str.cat() for x in HOSTILE)
    specs = text[text.index("id='fx-specs'>"):]
    assert "</script><script>alert" not in specs.split("</script>", 1)[0]  # JSON cannot close its tag


def test_a_sweep_report(fable, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the weather today is\nthe traveller said\n")
    out = tmp_path / "sweep"
    from explorer.core.params import SamplingParams
    from explorer.core.sweep import read_prompts

    fx.run_sweep(fable, read_prompts(prompts), SamplingParams(n=16, max_new_tokens=8), out)
    path = fx.report(out, tmp_path / "sweep.html")
    text = path.read_text()
    assert "Labels across the prompt set" in text and "“the traveller said”" in text
    assert "fable-pirate" in text and path.stat().st_size < 500_000
