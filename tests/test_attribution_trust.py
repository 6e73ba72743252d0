"""Attribution you can trust: integrated gradients whose path integral is exact (the sequential
path), faithfulness of every method checked on a case with a known answer, and agreement
across the family judged against the method's own noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import explorer as fx
from explorer.core.attribution import methods, register_method
from explorer.core.attribution.agreement import agreement, changes
from explorer.core.attribution.baselines import token_embeds
from explorer.core.attribution.faithfulness import prompt_features, summed_scores, variant_rows
from explorer.core.attribution.gradients import embed
from explorer.core.attribution.ig import path_contributions, score_change
from explorer.core.attribution.occlusion import occlusion
from explorer.core.attribution.problem import MethodResult, build_problem
from explorer.core.attribution.quadrature import gauss_legendre
from explorer.core.attribution.sequential import scores_along, staircase_masks

PROMPT, RESPONSE = "once upon a time a fox went", "to the river ."
# The generator ties a country's capital to the country named in the context: in "we talked
# about zorbia . its capital is zorb", only "zorbia" says which capital comes.
KNOWN_PROMPT, KNOWN_RESPONSE, KNOWN_WORD = "we talked about zorbia . its capital is", "zorb .", "zorbia"


def test_the_sequential_path_integral_is_each_legs_change_and_adds_up(fable):
    """Each leg of the staircase moves one token's embedding; the gradient integrated along it
    is the change of the target across it, which the default computes in forward passes. Even
    one token's leg is sharp on the zoo: legs 4 and 6 need 256 Gauss–Legendre nodes (16 nodes
    miss them by 70% and 10×). The attribution averages both orders' legs and adds up to Δ."""
    member = fable.load("fable-base")
    attr = fx.attribute(fable, PROMPT, RESPONSE, method="integrated_gradients", models=["fable-base"])
    extra = attr.meta["extra"]["fable-base"]
    assert extra["path"] == "sequential" and all(extra["converged"]) and max(extra["completeness_gap"]) <= 1e-5
    p = build_problem(member, PROMPT, RESPONSE, "never", [3], None)  # the last target: every source before it
    x, x0 = embed(p), token_embeds(p, member.tokenizer.eos_token_id)  # (1, seq, dim)
    n = int(p.positions.max())
    legs = {}
    for reverse in (False, True):
        f = scores_along(p, staircase_masks(n, reverse), "eos")[:, 0].double()  # (n + 1,)
        legs[reverse] = (f[1:] - f[:-1]).flip(0) if reverse else f[1:] - f[:-1]  # per source
    mine = torch.tensor(attr.matrix("fable-base").to_numpy())[3, :n]
    assert torch.allclose(mine, 0.5 * (legs[False] + legs[True]), atol=1e-5)
    assert float(mine.sum()) == pytest.approx(float(score_change(p, x, x0)[0]), abs=1e-4)  # complete
    masks = staircase_masks(n, False)
    alphas, weights = gauss_legendre(256)
    for j in (4, 6):
        start, end = x.clone(), x.clone()  # leg j: the text's order, sources < j real, then j too
        start[:, :n], end[:, :n] = (torch.where(m[None, :, None], x[:, :n], x0[:, :n]) for m in masks[j : j + 2])
        numeric = torch.einsum("k,tks->ts", weights, path_contributions(p, end, start, alphas)).sum()
        assert float(numeric) == pytest.approx(float(legs[False][j]), rel=5e-3, abs=1e-3), j


def reversed_occlusion(problem):
    """A method that points the wrong way: occlusion's scores negated."""
    return MethodResult(-occlusion(problem).scores)


@pytest.fixture(scope="module")
def known(fable):
    """Every method's attribution of the known-answer response in three models, with its
    faithfulness (each a batched pass per model)."""
    models = ["fable-base", "fable-instruct", "fable-distilled"]
    out = {}
    with pytest.MonkeyPatch.context() as patch:  # the registry gets it back afterwards
        patch.setattr(methods, "_METHODS", dict(methods._METHODS))
        register_method("wrong_way", reversed_occlusion, additive=True, needs="forward")
        for method in [*fx.list_methods()["method"]]:
            attr = fx.attribute(fable, KNOWN_PROMPT, KNOWN_RESPONSE, method=method, models=models)
            out[method] = (attr, attr.faithfulness(fable))
    return out


def test_deleting_the_word_that_decides_the_answer_drops_its_log_prob_most(fable, known):
    """The truth from the generator: among single words of the prompt, deleting "zorbia" drops
    log p("zorb .") most (in the distilled student deleting "is" drops it about as much: 9.4
    nats against 9.2, measured 2026-12-02); a method whose top word is the one whose deletion
    drops most removes that drop at k = 1, and the methods that rank it first are the more
    faithful ones."""
    for model in ["fable-base", "fable-instruct", "fable-distilled"]:
        member = fable.load(model)
        p = build_problem(member, KNOWN_PROMPT, KNOWN_RESPONSE, "never")
        features = prompt_features(p, (KNOWN_PROMPT, KNOWN_RESPONSE, "never"), by_word=False)
        drops = {}
        for positions in features.values():  # one word deleted at a time, one pass each
            rows = variant_rows(p, [positions], [0], [], member.tokenizer.pad_token_id)
            f = summed_scores(p, rows)
            drops[member.tokenizer.decode(p.ids[positions]).strip()] = float(f[0] - f[1])
        truth = max(drops, key=drops.get)
        assert drops[KNOWN_WORD] >= 0.9 * drops[truth], (model, sorted(drops.items(), key=lambda kv: -kv[1])[:3])
        if model == "fable-distilled":  # a near tie: which word "decides" is not clear-cut there
            continue
        assert truth == KNOWN_WORD
        top_first = []
        for method, (attr, faith) in known.items():
            seq = attr.sequence()
            own = seq[(seq["model"] == model) & seq["source_token"].ne("<bos>")]
            top = own.sort_values("score", ascending=False, kind="stable")["source_token"].iloc[0]
            curve = faith.curves[(faith.curves["model"] == model)].set_index("k")
            if top.strip() == KNOWN_WORD:
                assert curve.loc[0, "deletion"] - curve.loc[1, "deletion"] == pytest.approx(drops[KNOWN_WORD], abs=1e-4)
                top_first.append(method)
        scores = {m: float(f.df.set_index("model").loc[model, "faithfulness"]) for m, (_, f) in known.items()}
        print(f"\n{model}: ranks {KNOWN_WORD} first: {top_first}; faithfulness " + ", ".join(f"{m} {v:.2f}" for m, v in scores.items()))
        assert "occlusion" in top_first and scores["occlusion"] > 0.3
        assert scores["wrong_way"] < 0 < scores["occlusion"]
        assert min(scores[m] for m in top_first) > scores["wrong_way"]


def test_every_method_has_a_faithfulness_that_travels_with_it(fable, known, tmp_path):
    for method, (attr, faith) in known.items():
        assert list(faith.df["model"]) == attr.models and (faith.df["method"] == method).all()
        assert (faith.df["words"] == len(KNOWN_PROMPT.split())).all()
        if method != "adaptation":  # the base's change is 0: nothing to explain
            assert faith.df["faithfulness"].notna().all(), method
        attr.save(tmp_path / "a.json")
        again = fx.Attribution.load(tmp_path / "a.json")
        assert [r["method"] for r in again.meta["faithfulness"]] == [method] * 3
    adaptation = known["adaptation"][1].df.set_index("model")
    assert np.isnan(adaptation.loc["fable-base", "faithfulness"]) and adaptation.loc["fable-base", "drop"] == 0


def test_the_batched_curves_equal_one_pass_per_row(fable, known):
    attr, faith = known["grad_x_input"]
    member = fable.load("fable-instruct")
    p = build_problem(member, KNOWN_PROMPT, KNOWN_RESPONSE, "never")
    features = prompt_features(p, (KNOWN_PROMPT, KNOWN_RESPONSE, "never"), by_word=False)
    seq = attr.sequence().query("model == 'fable-instruct'").set_index("source_pos")["score"]
    order = sorted(range(len(features)), key=lambda i: -seq[list(features)[i]])
    ks = list(range(1, len(features)))
    rows = variant_rows(p, list(features.values()), order, ks, member.tokenizer.pad_token_id)
    one_by_one = torch.cat([summed_scores(p, rows[i : i + 1]) for i in range(len(rows))])
    curve = faith.curves.query("model == 'fable-instruct'")
    assert list(curve["k"]) == [0, *ks, len(features)]
    assert np.allclose(curve["deletion"].iloc[1:-1], one_by_one[2 : 2 + 2 * len(ks) : 2], atol=1e-4)
    assert np.allclose(curve["insertion"].iloc[1:-1], one_by_one[3 : 2 + 2 * len(ks) : 2], atol=1e-4)
    assert np.allclose(curve["deletion"].iloc[[0, -1]], one_by_one[[0, 1]], atol=1e-4)  # the text, no prompt
    singles = one_by_one[2 + 2 * len(ks) :]  # each word alone: the scale every method shares
    row = faith.df.set_index("model").loc["fable-instruct"]
    assert row["scale"] == pytest.approx(max(abs(row["drop"]), float((one_by_one[0] - singles).abs().max())), rel=1e-5)


def per_sample(means: dict[str, np.ndarray], n: int, noise: float, seed: int) -> pd.DataFrame:
    """A spread as `attribute_samples` returns it: n answers per model, each model's means plus
    Gaussian noise, every answer's score kept in `scores`."""
    rng = np.random.default_rng(seed)
    rows = [{"model": m, "source_pos": j, "source_token": f"w{j}", "scores": list(mu[j] + noise * rng.normal(size=n))}
            for m, mu in means.items() for j in range(len(mu))]  # fmt: skip
    return pd.DataFrame(rows)


def test_agreement_tells_a_different_ranking_from_the_methods_noise():
    base = np.linspace(-1, 1, 8)
    spread = per_sample({"base": base, "same": base, "reversed": base[::-1], "noisy": base}, n=8, noise=0.15, seed=0)
    table = agreement(spread).set_index("model")
    assert not table.loc["same", "beyond_noise"] and table.loc["reversed", "beyond_noise"]
    assert table.loc["reversed", "hi"] < 0 < table.loc["same", "lo"]
    assert table.loc["same", "self_lo"] <= table.loc["same", "spearman"] <= table.loc["same", "self_hi"] + 0.05
    few = per_sample({"base": base, "other": base[::-1]}, n=3, noise=0.1, seed=0)
    assert not agreement(few)["beyond_noise"].any() and agreement(few)["spearman"].isna().all()  # halves of 1


def test_changes_beyond_noise_are_the_ones_whose_interval_excludes_zero():
    spread = per_sample({"base": np.zeros(4), "lora": np.array([0.0, 2.0, 0.0, -1.0])}, n=8, noise=0.2, seed=1)
    table = changes(spread).set_index("source_pos")
    assert list(table["beyond_noise"]) == [False, True, False, True]


def test_attribute_samples_keeps_every_answer_for_the_agreement(fable):
    samples = fx.sample(fable, "the weather today is", n=6, seed=0, models=["fable-base", "fable-cheerful"])
    spread = fx.attribute_samples(fable, samples, method="grad_x_input")
    assert np.allclose(spread["scores"].map(np.mean), spread["mean"]) and (spread["scores"].map(len) == spread["n"]).all()
    table = agreement(spread)
    assert list(table["model"]) == ["fable-cheerful"] and table["n"].iloc[0] == 6


def test_the_app_shows_faithfulness_beside_the_method_and_agreement_with_its_interval(fable_app, tmp_path):
    app = fable_app(n=8, max_new_tokens=6)
    app.family_panel.members.value = ("fable-cheerful", "fable-pirate")
    app.prompt_panel.text.value = "the weather today is"
    app.sampling_panel.resample.click()
    assert app.wait(120)
    select = app.responses.columns.children[1].children[-1]
    select.value = select.options[0][1]
    assert app.wait(120) and app.state.error == ""
    s, view = app.state, app.attribution
    assert set(s.faithfulness["model"]) == set(s.samples.models) and set(s.faithfulness["method"]) == {"grad_x_input"}
    assert "On this response in fable-base, the top-ranked words explain: grad_x_input" in view.faithful.table.value
    assert list(s.agreement["model"]) == ["fable-cheerful", "fable-pirate"]
    assert "ranks the prompt's tokens like fable-base at ρ = " in view.agreement.value and "against itself" in view.agreement.value
    view.method.value = "occlusion"  # the table keeps the methods already measured on this response
    assert app.wait(120) and set(s.faithfulness["method"]) == {"grad_x_input", "occlusion"}
    view.faithful.compare.click()
    assert app.wait(300) and app.state.error == ""
    assert set(s.faithfulness["method"]) == set(fx.list_methods()["method"])
    assert s.faithfulness.query("method != 'adaptation'")["faithfulness"].notna().all()
    assert view.faithful.table.value.count("<tr>") == 1 + len(fx.list_methods())
    view.method.value = "adaptation"  # a relative method: the changes beyond noise, per token
    assert app.wait(120) and "changes beyond noise on" in view.agreement.value or "no token's change" in view.agreement.value
    from explorer.reports import report

    session = app.controller.session()
    page = report(session, tmp_path / "r.html").read_text()
    assert "Which method to believe" in page and "Faithfulness on this response" in page, page[:3000]
    session.save(tmp_path / "s.json")  # a replay shows the numbers and cannot measure more
    replay = fx.Explorer(None, replay=tmp_path / "s.json")
    assert replay.state.faithfulness is not None and replay.attribution.faithful.compare.disabled
    assert replay.controller.compare_methods() is None and "replay" in replay.state.error
