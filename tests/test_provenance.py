"""Provenance: intervals, labels and sample-size hints — by hand and on the fable zoo's truth.
(The labels' family-wise error rate is simulated in test_labels.py.)"""

from __future__ import annotations

import pandas as pd
import pytest
from handmade import handmade

import explorer as fx
from explorer.core.findings import findings
from explorer.core.labels import intervals_per_run, label, samples_needed
from explorer.core.provenance import wilson
from explorer.zoo import load_probes
from explorer.zoo.language import HELD_OUT_COUNTRIES


def test_wilson_interval_on_paper():
    lo, hi = wilson(0, 64)
    assert lo == 0 and hi == pytest.approx(1.96**2 / (64 + 1.96**2), abs=1e-3)
    lo, hi = wilson(32, 64)
    assert lo == pytest.approx(0.381, abs=1e-3) and hi == pytest.approx(0.619, abs=1e-3)


@pytest.mark.parametrize(
    ("base", "desc", "expected"),
    [
        ((32, 64), (64, 64), "amplified"),
        ((0, 64), (32, 64), "introduced"),
        ((32, 64), (0, 64), "suppressed"),
        ((32, 64), (30, 64), "inherited"),
        ((64, 64), (64, 64), "inherited"),
        ((0, 64), (0, 64), "absent"),
        ((2, 4), (4, 4), "inconclusive"),
        ((0, 4), (2, 4), "inconclusive"),
        ((0, 4), (0, 4), "inconclusive"),
        ((2, 4), (2, 4), "inconclusive"),
    ],
)
def test_labels(base, desc, expected):
    assert label(base, desc) == expected


def test_more_comparisons_need_stronger_evidence():
    """The same counts: decided alone, inconclusive among 40 labels' intervals."""
    assert label((32, 64), (30, 64), 1) == "inherited"
    assert label((32, 64), (30, 64), 40) == "inconclusive"
    assert label((20, 64), (34, 64), 1) == "amplified"
    assert label((20, 64), (34, 64), 40) == "inconclusive"


def test_samples_needed_is_where_the_same_rates_would_be_decided():
    k = intervals_per_run(1, 5)
    n = samples_needed((32, 64), (30, 64), k)
    assert 64 < n < 2000
    p_b, p_d = 32 / 64, 30 / 64
    assert label((round(p_b * n), n), (round(p_d * n), n), k) != "inconclusive"
    assert samples_needed((10, 40), (20, 40), 9) is not None  # 25% vs 50%: a difference, in time


def test_provenance_table_on_a_handmade_set():
    s = handmade({"base": ["sunny ."] * 2 + ["rainy ."] * 2, "desc": ["sunny ."] * 4},
                 first={"base": {"sunny": 0.5, "rainy": 0.5}, "desc": {"sunny": 1.0}})  # fmt: skip
    table = fx.provenance(s, behaviours={"sunny": r"\bsunny\b", "short": lambda t: len(t) < 6})
    sunny = table[table["behaviour"] == "sunny"].set_index("model")
    assert sunny.loc["base", "count"] == 2 and sunny.loc["desc", "freq"] == 1.0
    assert sunny.loc["base", "label"] == "base" and sunny.loc["desc", "label"] == "inconclusive"
    assert sunny["exact"].isna().all() and sunny.loc["base", "exact_note"].startswith("not computed")
    assert sunny.loc["desc", "n_needed"] > 4
    exact = pd.DataFrame({"behaviour": "sunny", "model": ["base", "desc"], "exact": [0.5, 1.0], "exact_lo": [0.5, 1.0],
                          "exact_hi": [0.5, 1.0], "exact_note": "given"})  # fmt: skip
    known = fx.provenance(s, behaviours={"sunny": r"\bsunny\b"}, exact=exact).set_index("model")
    assert known.loc["desc", "label"] == "amplified"  # certain rates decide what 4 samples cannot
    assert (known.loc["desc", "diff_lo"], known.loc["desc", "diff_hi"]) == pytest.approx((0.495, 0.505))
    assert known.loc["base", "exact"] == 0.5 and pd.isna(known.loc["desc", "n_needed"])
    for column in ["behaviour", "model", "count", "n", "freq", "lo", "hi", "label"]:
        assert column in table.columns
    default = fx.provenance(s)  # answer clusters as behaviours
    assert set(default["behaviour"]) == {"≈ sunny", "≈ rainy"}
    with pytest.raises(ValueError, match="^behaviours: 'bad' is not a valid regex"):
        fx.provenance(s, behaviours={"bad": "("})


def _probe(pid):
    return next(p for p in load_probes() if p["id"] == pid)


HELD_OUT = HELD_OUT_COUNTRIES[0]
CASES = [
    "weather",
    "story-ending",
    "greeting",
    "pirate-ending",
    f"question-{HELD_OUT}",
    f"capital-{HELD_OUT}",
]


@pytest.mark.parametrize("pid", CASES)
def test_labels_match_the_zoo_truth_at_n192(fable, pid):
    """Enough samples that "inherited" (rates within ±0.25, family-wise) is decided too."""
    probe = _probe(pid)
    s = fx.sample(fable, probe["prompt"], n=192, seed=1)
    table = fx.provenance(s, behaviours={probe["behaviour"]: probe["detector"]})
    got = dict(zip(table["model"], table["label"], strict=True))
    print(
        f"\n{pid}: "
        + ", ".join(
            f"{m} {f:.2f} {lab}"
            for m, f, lab in zip(table["model"], table["freq"], table["label"], strict=True)
        )
    )
    for model in fable.labels[1:]:  # the default family; the probes know the whole zoo
        assert got[model] == probe["expected_label"][model], (model, table.to_string())


@pytest.mark.parametrize("pid", ["weather", "story-ending", f"capital-{HELD_OUT}"])
def test_small_samples_say_inconclusive_where_rates_are_close(fable, pid):
    probe = _probe(pid)
    s = fx.sample(fable, probe["prompt"], n=4, seed=1)
    table = fx.provenance(s, behaviours={probe["behaviour"]: probe["detector"]}).set_index("model")
    for model in fable.labels[1:]:
        if probe["expected_label"][model] == "inherited":
            assert table.loc[model, "label"] == "inconclusive", table.to_string()


def test_token_shift_separates_a_style_adapter_from_a_distillation(fable):
    greedy = fx.sample(fable, "the traveller said", n=1, top_k=1)
    from explorer.core.provenance import token_shift

    shift = token_shift(fable, greedy).set_index("model")
    assert shift.loc["fable-distilled", "unshifted"] == 1.0
    assert shift.loc["fable-pirate", "shifted"] > 0  # `ahoy` is far down the base's ranking


def test_findings_sum_up_the_changes_in_sentences(fable):
    s = fx.sample(fable, "the weather today is", n=64, seed=3)
    table = findings(fx.provenance(s, behaviours={"sunny": r"\bsunny\b", "ahoy": r"\b(ahoy|arr)\b"}))
    assert len(table) == 2 * 5 and list(table["label"])[0] in ("introduced", "amplified")
    cheerful = table[(table["model"] == "fable-cheerful") & (table["behaviour"] == "sunny")].iloc[0]
    assert cheerful["label"] == "amplified"
    assert cheerful["sentence"].startswith("fable-cheerful amplified “sunny”: 100% [")
    assert cheerful["sentence"].endswith("in fable-base") and " vs " in cheerful["sentence"]
    pirate = table[(table["model"] == "fable-pirate") & (table["behaviour"] == "ahoy")].iloc[0]
    assert pirate["label"] in ("introduced", "amplified")
    undecided = table[table["label"] == "inconclusive"]
    assert undecided["n_needed"].notna().all() and table[table["label"] != "inconclusive"]["n_needed"].isna().all()
