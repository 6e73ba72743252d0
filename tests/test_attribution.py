"""Attribution: equal to Captum where Captum has the method, causal, batched = looped, complete."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import (
    FeatureAblation,
    InputXGradient,
    IntegratedGradients,
    LayerIntegratedGradients,
    LLMAttribution,
    TextTokenInput,
)

import explorer as fx
from explorer.core.attribution import gradients
from explorer.core.attribution.baselines import baseline_embeds
from explorer.core.attribution.gradients import embed
from explorer.core.attribution.ig import path_contributions
from explorer.core.attribution.problem import Problem, build_problem, target_scores
from explorer.core.attribution.quadrature import clenshaw_curtis
from explorer.core.teacher import PREFIX_GROUPS, batched_choices, first_difference, worth_sharing

PROMPT = "once upon a time a fox went to the river . it ended"
RESPONSE = "happily . the end"  # 'the end' is off-distribution: gradients have work to do


@pytest.fixture(scope="module")
def base(fable):
    return fable.load("fable-base")


def problem(base, targets=None, foil=None) -> Problem:
    return build_problem(base, PROMPT, RESPONSE, "never", targets, foil)


def target_fn(p: Problem, t: int):
    """Captum forward function: inputs_embeds -> score of target t (batch,)."""

    def forward(embeds):
        logits = p.member.model(inputs_embeds=embeds).logits
        return target_scores(logits, p)[:, t]

    return forward


def ours(fable, method, **kw):
    attr = fx.attribute(fable, PROMPT, RESPONSE, method=method, models=["fable-base"], **kw)
    return attr, torch.tensor(attr.matrix("fable-base").to_numpy())


def test_grad_x_input_equals_captum(fable, base):
    _, mine = ours(fable, "grad_x_input")
    p = problem(base)
    x = base.model.get_input_embeddings()(p.ids.unsqueeze(0)).detach()
    ref = torch.stack(
        [InputXGradient(target_fn(p, t)).attribute(x).sum(-1)[0] for t in range(len(p.targets))]
    )
    assert (mine - ref).abs().max().item() <= 1e-4


def test_integrated_gradients_equal_captum_on_the_embedding_layer(fable, base):
    attr, mine = ours(fable, "integrated_gradients", n_steps=32, baseline="pad")
    p = problem(base)
    layer = base.model.get_input_embeddings()
    refs = []
    for t in range(len(p.targets)):

        def forward(ids, t=t):
            return target_scores(base.model(input_ids=ids).logits, p)[:, t]

        lig = LayerIntegratedGradients(forward, layer)
        a = lig.attribute(p.ids.unsqueeze(0), baselines=torch.full_like(p.ids, base.tokenizer.pad_token_id).unsqueeze(0),
                          n_steps=32, method="gausslegendre")  # fmt: skip
        refs.append(a.sum(-1)[0])
    diff = (mine - torch.stack(refs)).abs().max().item()
    print(f"\nIG vs Captum LayerIntegratedGradients: max |diff| {diff:.2e}")
    assert diff <= 1e-4


def test_integrated_gradients_zero_baseline_equal_captum(fable, base):
    _, mine = ours(fable, "integrated_gradients", n_steps=16, baseline="zero", targets=[0, 2])
    p = problem(base, targets=[0, 2])
    x = base.model.get_input_embeddings()(p.ids.unsqueeze(0)).detach()
    ref = torch.stack([
        IntegratedGradients(target_fn(p, t)).attribute(x, baselines=torch.zeros_like(x), n_steps=16, method="gausslegendre").sum(-1)[0]
        for t in range(2)
    ])  # fmt: skip
    assert (mine - ref).abs().max().item() <= 1e-4


def test_occlusion_equals_captum_feature_ablation(fable, base):
    _, mine = ours(fable, "occlusion")
    p = problem(base)
    llm = LLMAttribution(FeatureAblation(base.model), base.tokenizer)
    inp = TextTokenInput(PROMPT, base.tokenizer)
    target = torch.tensor(p.ids[p.start :].tolist())
    res = llm.attribute(inp, target=target, forward_in_tokens=False)
    ref = res.token_attr  # (targets, prompt tokens)
    assert ref.shape == (len(p.targets), p.start)
    diff = (mine[:, : p.start] - ref).abs().max().item()
    print(f"\nocclusion vs Captum FeatureAblation: max |diff| {diff:.2e}")
    assert diff <= 1e-4


def test_default_integrated_gradients_is_complete(fable):
    attr, _ = ours(fable, "integrated_gradients")
    extra = attr.meta["extra"]["fable-base"]
    print(
        f"\nadaptive IG: {extra['n_steps']} steps, max completeness gap {max(extra['completeness_gap']):.2%}"
    )
    assert max(extra["completeness_gap"]) <= 0.05


@pytest.mark.parametrize(
    "method",
    [
        "saliency",
        "grad_x_input",
        "integrated_gradients",
        "occlusion",
        "attention",
        "attention_rollout",
    ],
)
def test_sources_after_the_predicting_position_score_exactly_zero(fable, base, method):
    _, m = ours(fable, method)
    p = problem(base)
    for t in range(len(p.targets)):
        assert (m[t, p.start + t :] == 0).all(), (method, t)


@pytest.mark.parametrize("method", ["saliency", "grad_x_input", "occlusion"])
def test_batched_equals_a_per_target_loop(fable, method):
    _, batched = ours(fable, method)
    for t in range(batched.shape[0]):
        _, single = ours(fable, method, targets=[t])
        assert torch.allclose(single[0], batched[t], atol=1e-5), (method, t)  # float32 noise only


def test_adaptation_of_a_model_against_itself_is_exactly_zero(fable):
    attr = fx.attribute(fable, "the weather today is", "sunny .", method="adaptation",
                        models=["fable-base", "fable-cheerful"])  # fmt: skip
    base = attr.df[attr.df["model"] == "fable-base"]
    assert (base["score"] == 0).all()
    cheerful = attr.df[attr.df["model"] == "fable-cheerful"]
    assert cheerful["score"].abs().max() > 0.1  # the adaptation acts on the weather prompt


def test_contrastive_occlusion_explains_target_against_foil(fable):
    plain = fx.attribute(
        fable, "the weather today is", "sunny", method="occlusion", models=["fable-base"]
    )
    contrast = fx.attribute(
        fable,
        "the weather today is",
        "sunny",
        method="occlusion",
        models=["fable-base"],
        foil="rainy",
    )
    base = fable.load("fable-base")
    tok = base.tokenizer
    ids = tok("the weather today is", return_tensors="pt")["input_ids"][0]  # (seq,)
    sunny, rainy = tok.convert_tokens_to_ids("sunny"), tok.convert_tokens_to_ids("rainy")

    def margin(row: torch.Tensor) -> tuple[float, float]:  # log p(sunny), log p(sunny) − log p(rainy)
        with torch.no_grad():
            logp = torch.log_softmax(base.model(input_ids=row.unsqueeze(0)).logits[0, -1], -1)
        return float(logp[sunny]), float(logp[sunny] - logp[rainy])

    want_plain, want_contrast = [], []
    original = margin(ids)
    for s in range(len(ids)):
        occluded = ids.clone()
        occluded[s] = tok.pad_token_id  # the default replacement: the first of pad, unk, eos, bos
        changed = margin(occluded)
        want_plain.append(original[0] - changed[0])
        want_contrast.append(original[1] - changed[1])
    got_plain = plain.df.sort_values("source_pos")["score"].to_numpy()[: len(ids)]
    got_contrast = contrast.df.sort_values("source_pos")["score"].to_numpy()[: len(ids)]
    assert got_plain == pytest.approx(want_plain, abs=1e-5)
    assert got_contrast == pytest.approx(want_contrast, abs=1e-5)
    assert max(abs(a - b) for a, b in zip(want_plain, want_contrast, strict=True)) > 0.01
    assert contrast.meta["target"] == "contrastive" and plain.meta["target"] == "logprob"
    with pytest.raises(ValueError, match="^foil: 'zzz' is not a token"):
        fx.attribute(fable, "the weather today is", "sunny", method="occlusion", foil="zzz")
    with pytest.raises(ValueError, match="^foil: attention is not contrastive"):
        fx.attribute(fable, "the weather today is", "sunny", method="attention", foil="rainy")


def test_attribution_object(fable, tmp_path):
    attr = fx.attribute(
        fable, PROMPT, RESPONSE, method="grad_x_input", models=["fable-base", "fable-cheerful"]
    )
    for column in [
        "model",
        "method",
        "target_pos",
        "target_token",
        "source_pos",
        "source_token",
        "score",
    ]:
        assert column in attr.df.columns
    m = attr.matrix("fable-cheerful", normalise="l1")
    assert m.abs().sum(axis=1).round(6).eq(1).all()
    seq = attr.sequence()
    assert set(seq["model"]) == {"fable-base", "fable-cheerful"}
    diff = attr.diff()
    assert (diff[diff["model"] == "fable-base"]["score"] == 0).all()
    rho = attr.rank_correlation().set_index("model")["spearman"]
    assert rho["fable-base"] == pytest.approx(1.0)
    path = tmp_path / "attr.json"
    attr.save(path)
    back = fx.Attribution.load(path)
    import pandas as pd

    pd.testing.assert_frame_equal(back.df, attr.df)
    assert back.meta["method"] == "grad_x_input"


def test_attribution_over_resamples(fable):
    samples = fx.sample(
        fable, "the weather today is", n=6, seed=0, models=["fable-base", "fable-cheerful"]
    )
    summary = fx.attribute_samples(fable, samples, method="grad_x_input")
    assert set(summary["model"]) == {"fable-base", "fable-cheerful"}
    assert (summary["n"] == 6).all()
    for model in ("fable-base", "fable-cheerful"):  # the same as attributing each sample alone
        per_sample = [
            fx.attribute(fable, samples.prompt, text, method="grad_x_input", models=[model],
                         chat=samples.params.chat).sequence()["score"].to_numpy()
            for text in samples.texts(model)
        ]  # fmt: skip
        rows = summary[summary["model"] == model].sort_values("source_pos")
        assert rows["mean"].to_numpy() == pytest.approx(np.mean(per_sample, axis=0), abs=1e-6)
        assert rows["sd"].to_numpy() == pytest.approx(np.std(per_sample, axis=0, ddof=1), abs=1e-6)
    assert summary["sd"].max() > 0  # the six answers differ, so their attributions spread


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "nope"}, "^method: "),
        ({"response": ""}, "^response: is empty"),
        ({"prompt": ""}, "^prompt: is empty"),
        ({"targets": [99]}, "^targets: "),
        ({"method": "integrated_gradients", "n_steps": 0}, "^n_steps: "),
        ({"method": "integrated_gradients", "path": "straight", "tolerance": 0}, "^tolerance: "),
        ({"method": "integrated_gradients", "path": "straight", "convergence": -1}, "^convergence: "),
        ({"method": "integrated_gradients", "path": "straight", "max_steps": 4}, "^max_steps: "),
        ({"method": "integrated_gradients", "path": "curved"}, "^path: "),
        ({"method": "integrated_gradients", "path": "sequential", "n_steps": 8}, "^n_steps: the sequential path"),
        ({"method": "integrated_gradients", "baseline": "moon"}, "^baseline: "),
        ({"method": "occlusion", "replacement": "moon"}, "^replacement: "),
    ],
)
def test_bad_arguments(fable, kwargs, match):
    args = {
        "prompt": "the weather today is",
        "response": "sunny .",
        "models": ["fable-base"],
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        fx.attribute(fable, **args)


def test_word_alignment_of_a_word_level_model_keeps_its_token_scores(fable):
    tokens = fx.attribute(fable, PROMPT, RESPONSE, method="grad_x_input", models=["fable-base"])
    words = fx.attribute(
        fable, PROMPT, RESPONSE, method="grad_x_input", models=["fable-base"], align="words"
    )
    assert words.meta["align"] == "words" and tokens.meta["align"] == "tokens"
    a, b = tokens.matrix("fable-base").to_numpy(), words.matrix("fable-base").to_numpy()
    assert a.shape == b.shape  # one token per word, and <bos> is the special unit 0
    assert abs(a - b).max() <= 1e-6
    assert list(words.df["source_token"].unique()[:3]) == ["⟨special⟩", "once", "upon"]


@pytest.mark.parametrize(
    ("method", "additive"), [("grad_x_input", True), ("occlusion", True), ("saliency", False)]
)
def test_other_tokenizers_are_aligned_to_words(tmp_path, zoo_path, method, additive):
    from tiny import char_tokenizer, tiny_llama

    from explorer.core.store import ModelStore

    chars = tiny_llama(tmp_path / "chars", char_tokenizer())
    family = fx.load_family(zoo_path / "fable-base", descendants=[chars], store=ModelStore())
    prompt, response = "the weather today is", "sunny ."
    attr = fx.attribute(family, prompt, response, method=method)
    assert attr.meta["align"] == "words"
    m_base, m_chars = attr.matrix("fable-base"), attr.matrix("chars")
    assert m_base.shape == m_chars.shape == (2, 7)  # 2 response words × (special + 4 + 2 words)
    assert list(attr.df["target_token"].unique()) == ["sunny", "."]
    own = fx.attribute(family, prompt, response, method=method, models=["chars"], align="tokens").df
    if additive:  # a word's score is the sum over its tokens (targets and sources)
        assert abs(m_chars.to_numpy().sum() - own["score"].sum()) <= 1e-4
    else:
        assert abs(m_chars.to_numpy().max() - own["score"].max()) <= 1e-6
    # "sunny" (5 characters) explained by the prompt word "weather" is the sum over 5 × 7 cells
    tok = family.tokenizer("chars")
    n_prompt = len(tok(prompt)["input_ids"])
    cells = own[(own["target_pos"] < 5) & (own["source_pos"].between(4, 10))]["score"]
    assert n_prompt == 1 + 17  # <bos> + the prompt's 17 non-space characters
    want = cells.sum() if additive else cells.max()
    assert abs(m_chars.loc[0, 2] - want) <= 1e-5


def test_adaptive_ig_refines_only_the_targets_that_need_it(fable, base):
    attr, mine = ours(fable, "integrated_gradients", path="straight")
    extra = attr.meta["extra"]["fable-base"]
    used = extra["steps_per_target"]
    assert extra["rule"] == "clenshaw-curtis"
    assert len(set(used)) > 1 and extra["n_steps"] == max(used)  # targets differ in need
    for t in {used.index(s) for s in set(used)}:  # one target per node count
        # the nested rounds sum to one Clenshaw–Curtis rule of the target's own node count
        p = problem(base, targets=[t])
        x, x0 = embed(p), baseline_embeds(p, "eos")
        alphas, weights = clenshaw_curtis(used[t] - 1)
        alone = torch.einsum("k,tks->ts", weights, path_contributions(p, x, x0, alphas))
        assert torch.allclose(alone[0], mine[t].float(), atol=1e-5), (t, used[t])


def test_clenshaw_curtis_rules_are_exact_for_polynomials_and_nested():
    for n in (4, 8, 64):
        alphas, weights = clenshaw_curtis(n)
        moments = [(weights * alphas.double() ** d).sum().item() for d in range(n + 1)]
        assert moments == pytest.approx([1 / (d + 1) for d in range(n + 1)], abs=1e-6)
        assert torch.equal(clenshaw_curtis(2 * n)[0][::2], alphas)  # old nodes are kept


def test_adaptive_ig_stops_when_the_attributions_converge_not_only_their_sum(fable):
    """On this target a rule of 33 nodes already sums to Δ within 1%, while its token scores
    are 15% (L1) from the converged ones: the gap alone is not a stopping rule."""
    prompt = "once upon a time a fox went to the river . it ended happily . the traveller said"
    response = "hello to the owl . i visited zorbia"
    kw = {"method": "integrated_gradients", "models": ["fable-base"], "sources": "prompt",
          "targets": [7], "path": "straight"}  # fmt: skip

    def row(**options):
        attr = fx.attribute(fable, prompt, response, **kw, **options)
        extra = attr.meta["extra"]["fable-base"]
        return torch.tensor(attr.matrix("fable-base").to_numpy())[0], extra

    reference, _ = row(n_steps=1024)
    gap_only, gap_extra = row(convergence=1e9, budget=None)
    default, extra = row(budget=None)  # the rule alone; the budget has a test of its own

    def error(scores):
        return ((scores - reference).abs().sum() / reference.abs().sum()).item()

    print(f"\nL1 error: gap alone {error(gap_only):.1%} with {gap_extra['n_steps']} nodes, "
          f"default {error(default):.1%} with {extra['n_steps']} nodes")  # fmt: skip
    assert max(gap_extra["completeness_gap"]) <= 0.01 and error(gap_only) > 0.05
    assert max(extra["completeness_gap"]) <= 0.01 and max(extra["change"]) <= 0.05
    assert error(default) <= 0.02


def test_chunked_gradients_equal_one_pass_without_a_cache(fable, base, monkeypatch):
    """Groups of targets fed as cached chunks give the gradients of one uncached pass, also for
    targets out of order and repeated (which must share a chunk)."""
    response = "hello to the owl . i visited zorbia . the capital of zorbia is zorb ."
    order = [9, 0, 9, 3, 14, 1, 15, 2, 4, 5, 6, 7, 8, 10, 11, 12, 13]
    p = build_problem(base, PROMPT, response, "never", order, None)
    rows = (embed(p) * torch.linspace(0.2, 1, 32).view(-1, 1, 1)).detach()  # (32, seq, dim)
    assert len(gradients.position_groups(p.positions - 1, 8)) == 2  # 16 distinct positions
    chunked = gradients.target_gradients(p, rows)  # (targets, 32, seq, dim)
    monkeypatch.setattr(gradients, "cache_keyword", lambda model: None)
    uncached = gradients.target_gradients(p, rows)
    assert (chunked - uncached).abs().max() <= 1e-5 * uncached.abs().max()
    assert torch.equal(chunked[0], chunked[2])  # the repeated target


@pytest.mark.parametrize("label", ["fable-base", "fable-pirate"])
def test_rows_sharing_a_beginning_reuse_its_cache_and_score_the_same(fable, label):
    """Occlusion's variants reuse the original's key-value cache up to where they differ."""
    member = fable.load(label)
    p = build_problem(member, PROMPT, RESPONSE, "never", None, None)
    ids = p.ids
    rows = ids.repeat(len(ids) - 1, 1)
    rows[torch.arange(len(ids) - 1), torch.arange(len(ids) - 1)] = member.tokenizer.pad_token_id
    rows = torch.cat([ids.unsqueeze(0), rows, ids.unsqueeze(0)])  # the last row repeats the first
    pred, choices = p.positions - 1, p.choices
    first = first_difference(rows)
    order = first[first < rows.shape[1]].sort().values
    assert worth_sharing(order, max(4, -(-len(order) // PREFIX_GROUPS)), rows.shape[1])  # the shared path runs
    shared = member.choice_logprobs(rows, pred, choices)
    with torch.no_grad():
        plain = batched_choices(member, rows, pred, choices)
    assert shared.shape == plain.shape == (len(rows), len(p.targets), 1)
    assert (shared - plain).abs().max() <= 1e-5


def test_targets_stopped_by_the_budget_are_flagged_never_passed_as_converged(fable, monkeypatch):
    from explorer.core.attribution import ig

    monkeypatch.setattr(ig, "FLOOR_WORK", 0)  # the budget per target alone, on a tiny model
    prompt, response = "once upon a time a fox went to the river .", "it ended happily . the end"
    kw = {"method": "integrated_gradients", "models": ["fable-base"], "path": "straight"}
    free = fx.attribute(fable, prompt, response, budget=None, **kw)
    free_extra = free.meta["extra"]["fable-base"]
    n = len(free_extra["steps_per_target"])
    assert all(free_extra["converged"]) and free.df["converged"].all() and free.unconverged() == 0
    tight = fx.attribute(fable, prompt, response, budget=9, **kw)
    extra = tight.meta["extra"]["fable-base"]
    used = extra["steps_per_target"]
    assert extra["budget"] == 9 * n and extra["nodes"] == sum(used) <= 9 * n
    assert extra["nodes"] < free_extra["nodes"]  # the budget stopped it early
    converged = extra["converged"]
    assert not all(converged)
    for t, done in enumerate(converged):  # a flag is exactly the two checks
        assert done == (extra["completeness_gap"][t] <= 0.01 and extra["change"][t] <= 0.05)
        rows = tight.df[tight.df["target_pos"] == t]
        assert (rows["converged"] == done).all()
    assert f"{converged.count(False)} target(s) not converged" in tight.summary()
    first_round_only = fx.attribute(fable, prompt, response, budget=5, **kw)
    assert not any(first_round_only.meta["extra"]["fable-base"]["converged"])  # no change measured


def test_the_budget_is_checked(fable):
    with pytest.raises(ValueError, match="budget: None or an integer of at least 5"):
        fx.attribute(fable, "the weather today is", "sunny .", method="integrated_gradients", path="straight", budget=2)
