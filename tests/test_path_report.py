"""The rate-vs-λ chart, and sessions that carry amplified or decided samples: saved, loaded
and reported as they were labelled."""

from __future__ import annotations

import pandas as pd
import pytest

import explorer as fx
from explorer.core.decide import decide
from explorer.core.extrapolate import extrapolate, fitted_curve
from explorer.path_charts import rate_by_lambda_chart


def test_the_rate_against_lambda_chart_shows_intervals_the_line_and_the_read_back_rate():
    rates = pd.DataFrame({"behaviour": "frog", "model": ["b", "d", "d 1.5", "d 2"], "lam": [0, 1, 1.5, 2.0],
                          "count": [0, 1, 30, 60], "n": 64, "freq": [0, 1 / 64, 30 / 64, 60 / 64],
                          "lo": [0, 0.003, 0.35, 0.85], "hi": [0.06, 0.08, 0.59, 0.98]})  # fmt: skip
    fits = extrapolate(rates)
    assert 0.01 < fits["estimate"].iloc[0] < 0.1 and fits["fitted_on"].iloc[0] == "1.5, 2"
    spec = rate_by_lambda_chart(rates, fits, fitted_curve(rates), "d").to_dict()
    rule, point, line, read_rule, read_point = spec["layer"]
    assert rule["encoding"]["x"]["field"] == "lam" and rule["encoding"]["y2"]["field"] == "hi"
    assert line["mark"]["strokeDash"] == [4, 3] and read_point["mark"]["shape"] == "diamond"
    assert read_point["encoding"]["x"]["field"] == "at" and "read back at λ = 1" in str(read_point["encoding"]["tooltip"])
    alone = rate_by_lambda_chart(rates.assign(count=0)).to_dict()  # nothing to fit: intervals and rates only
    assert len(alone["layer"]) == 2
    falling = rates.assign(behaviour="sunny", count=[32, 30, 10, 2], freq=lambda t: t["count"] / 64)
    notes = extrapolate(pd.concat([rates, falling, rates.assign(behaviour="deer", count=[0, 0, 1, 2], freq=lambda t: t["count"] / 64)]))
    assert notes["note"].tolist() == ["", "not amplified along the path: its rate at λ = 1 is measured there directly (47%)",
                                      "never common above λ = 1 (at most 3%): nothing to read back"]  # fmt: skip


def test_a_session_keeps_and_reports_amplified_and_decided_samples(fable, tmp_path):
    behaviours = {"sunny": r"\bsunny\b"}
    decided = decide(fable, "the weather today is", {"≈ rainy": r"^rainy"}, n=16, budget=48, max_new_tokens=2,
                     models=["fable-base", "fable-cheerful"])  # fmt: skip
    amplified = fx.amplify(fable, "the weather today is", "fable-cheerful", lambdas=(0, 1, 1.5, 2), n=16, max_new_tokens=2)
    session = fx.Session(fable.to_dict(), decided.samples, behaviours, amplified=amplified)
    session.save(tmp_path / "s.json")
    back = fx.Session.load(tmp_path / "s.json")
    assert back.amplified.df.equals(amplified.df) and back.samples.meta["decided"]["reason"] == decided.reason
    page = back.report(tmp_path / "r.html").read_text()
    assert "Sampled until decided" in page and "confidence sequences" in page
    assert "Along the base → descendant path" in page and "sunny" in page
    alone = fx.report(amplified, tmp_path / "a.html").read_text()  # an amplified SampleSet on its own
    assert "Along the base → descendant path" in alone and "Findings" not in alone
    with pytest.raises(ValueError, match="no samples"):
        fx.report(fx.Session(fable.to_dict()), tmp_path / "none.html")
