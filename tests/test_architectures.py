"""Every decoder architecture users bring, through every feature.

A tiny randomly initialised family per architecture (tests/architectures.py: a base, a LoRA
adapter on every linear layer, a copy fine-tuned in its last block only), built once per module
in a temporary folder and loaded as a user would, from the folder with its model cards. Every
number is checked against an independent reference: a plain forward pass of the whole text
(no cache, all logits) for sampling, scoring and the lens; Captum for the gradient methods and
occlusion; the attention weights transformers returns; peft's own delta weights for the weight
diff; and the known truth of the last-block copy for the lens, patching and the weight diff.
A failure names the architecture and the feature (`test_lens[Gemma 2]`).
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch
from architectures import (
    ARCHITECTURES,
    CANNOT,
    MORE,
    PROMPT,
    RESPONSE,
    build_family,
    build_single,
    labels,
    lora,
    save,
)
from captum.attr import FeatureAblation, LayerGradientXActivation, LayerIntegratedGradients

import explorer as fx
from explorer.core.store import ModelStore

NAMES = list(ARCHITECTURES)
METHODS = list(fx.list_methods()["method"])
CAPTUM = ("saliency", "grad_x_input", "integrated_gradients", "occlusion")  # the methods Captum has
TOL = 2e-5  # float32 on tiny models: comparisons measured at most 1.5e-6 (relative) on six families


class Arch:
    """One architecture's family, loaded once, with the samples every test reads."""

    def __init__(self, name: str, root) -> None:
        self.name, self.root = name, root
        self.base, self.lora, self.tuned = labels(name)
        self.family = fx.load_family(root, store=ModelStore())
        self.samples = fx.sample(self.family, PROMPT, n=3, max_new_tokens=5, seed=0)
        self.n_layers = self.member(self.base).model.config.get_text_config().num_hidden_layers

    def member(self, label: str):
        return self.family.load(label)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The references below run on one torch thread, as the explorer runs tiny models: two
    threads on operations this small wait for each other (100× slower with a busy core)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", params=NAMES)
def arch(request, tmp_path_factory) -> Arch:
    root = build_family(tmp_path_factory.mktemp(labels(request.param)[0]), request.param)
    return Arch(request.param, root)


def prompt_ids(member, prompt: str = PROMPT) -> list[int]:
    return member.tokenizer(prompt)["input_ids"]


def plain_logprobs(member, ids: list[int], start: int) -> torch.Tensor:
    """log p of ids[start:] from one plain forward pass over the whole text: the reference."""
    with torch.no_grad():
        logits = member.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()  # (seq, vocab)
    logp = torch.log_softmax(logits, dim=-1)
    return logp[torch.arange(start - 1, len(ids) - 1), torch.tensor(ids[start:])]


def reference_for(arch: Arch, label: str, token_ids) -> torch.Tensor:
    prefix = prompt_ids(arch.member(label))
    return plain_logprobs(arch.member(label), prefix + list(token_ids), len(prefix))


def close(a, b, tol: float = TOL) -> bool:
    a, b = torch.as_tensor(np.asarray(a, dtype=float)), torch.as_tensor(np.asarray(b, dtype=float))
    return a.shape == b.shape and bool((a - b).abs().max() <= tol * max(1.0, float(b.abs().max())))


# --- sampling and scoring ---------------------------------------------------------------------


def test_the_family_is_found_from_its_cards(arch):
    assert arch.family.labels == [arch.base, arch.lora, arch.tuned]
    assert arch.family.ref(arch.lora).relation == "adapter"
    assert arch.family.ref(arch.tuned).relation == "finetune"
    assert arch.family.shared_tokenizer


def test_sampling_records_the_models_own_logprobs(arch):
    df = arch.samples.df
    assert (df.groupby("model").size() == 3).all() and set(df.model) == set(arch.family.labels)
    assert df.n_tokens.sum() > 0
    for row in df[df.n_tokens > 0].itertuples():  # a random model may end at once
        assert len(row.token_ids) == row.n_tokens
        assert close(row.model_logprobs, reference_for(arch, row.model, row.token_ids)), row.model


def test_cross_scores_and_log_ratios_equal_plain_forward_passes(arch):
    df = arch.samples.df
    under = {scorer: [reference_for(arch, scorer, ids) if len(ids) else torch.zeros(0) for ids in df.token_ids]
             for scorer in arch.family.labels}  # fmt: skip
    cross = fx.cross_score(arch.family, arch.samples).set_index(["sampler", "scorer"])
    for (sampler, scorer), got in cross["mean_logprob"].items():
        want = torch.cat([lp for lp, m in zip(under[scorer], df.model, strict=True) if m == sampler]).mean()
        assert got == pytest.approx(float(want), abs=TOL), (sampler, scorer)
    ratio = fx.log_ratio(arch.family, arch.samples)
    for (model, sample), rows in ratio.groupby(["model", "sample"]):
        i = int(np.flatnonzero((df.model == model).to_numpy() & (df["sample"] == sample).to_numpy())[0])
        assert close(rows.log_ratio, under[model][i] - under[arch.base][i]), (model, sample)
    assert ratio[ratio.model == arch.lora].log_ratio.abs().max() > 1e-3  # the adapter acts


# --- attribution --------------------------------------------------------------------------------


def score_fn(member, ids: torch.Tensor, start: int, t: int):
    """Captum's forward function: token ids (batch, seq) -> log p of response token t (batch,)."""
    position, token = start + t, int(ids[start + t])

    def forward(inputs):
        logits = member.model(input_ids=inputs, use_cache=False).logits  # (batch, seq, vocab)
        return torch.log_softmax(logits[:, position - 1].float(), dim=-1)[:, token]

    return forward


def captum_reference(member, method: str, ids: torch.Tensor, start: int, targets: list[int]) -> torch.Tensor:
    """(targets, seq) from Captum, one target at a time, as Captum users run it on a language
    model: the layer methods on the input embedding layer (its output is what is attributed,
    scaled where the model scales it), FeatureAblation on the ids."""
    rows, x = [], ids.unsqueeze(0)  # (1, seq)
    layer = member.model.get_input_embeddings()
    for t in targets:
        forward = score_fn(member, ids, start, t)
        if method == "occlusion":
            ablation = FeatureAblation(forward).attribute(x, baselines=0, feature_mask=torch.arange(len(ids)).unsqueeze(0),
                                                          perturbations_per_eval=len(ids))  # fmt: skip
            rows.append(ablation[0].float())
        elif method == "integrated_gradients":
            pad = torch.full_like(x, member.tokenizer.pad_token_id)
            ig = LayerIntegratedGradients(forward, layer).attribute(x, baselines=pad, n_steps=16, method="gausslegendre")
            rows.append(ig[0].sum(-1))
        else:  # the gradient itself (its norm: saliency), or gradient × input
            grads = LayerGradientXActivation(forward, layer, multiply_by_inputs=method == "grad_x_input").attribute(x)[0]
            rows.append(grads.sum(-1) if method == "grad_x_input" else grads.norm(dim=-1))
    return torch.stack(rows).detach()


def ours(arch: Arch, method: str, label: str, **options) -> torch.Tensor:
    if method == "integrated_gradients":
        options.update(n_steps=16, baseline="pad")
    if method in ("occlusion", "adaptation"):
        options.update(replacement=0)
    attr = fx.attribute(arch.family, PROMPT, RESPONSE, method=method, models=[label], **options)
    return torch.tensor(attr.matrix(label).to_numpy())  # (targets, seq)


def text_ids(member) -> tuple[torch.Tensor, int]:
    prefix = prompt_ids(member)
    return torch.tensor(prefix + member.tokenizer(RESPONSE, add_special_tokens=False)["input_ids"]), len(prefix)


@pytest.mark.parametrize("method", METHODS)
def test_attribution(arch, method):
    """Each method on every member: equal to Captum where Captum has it (on the base and the
    adapter, first and last target: the tuned copy runs the base's code), to the attention
    weights transformers returns for the attention methods, and (adaptation) to the difference
    of two occlusions, which is exact for an additive method. What an architecture cannot do
    (`CANNOT`) it says in a sentence."""
    if (arch.name, method) in CANNOT:
        with pytest.raises(ValueError, match=re.escape(CANNOT[arch.name, method])):
            fx.attribute(arch.family, PROMPT, RESPONSE, method=method)
        return
    for label in arch.family.labels:
        member = arch.member(label)
        ids, start = text_ids(member)
        mine = ours(arch, method, label)
        n = len(ids) - start
        assert mine.shape == (n, len(ids)), label
        causal = torch.arange(len(ids)).unsqueeze(0) >= (start + torch.arange(n)).unsqueeze(1)  # (targets, seq)
        assert (mine[causal] == 0).all(), label  # nothing after the position that predicts a target
        if method in CAPTUM:
            if label != arch.tuned:
                ref = captum_reference(member, method, ids, start, [0, n - 1])
                assert close(mine[[0, n - 1]], ref, 1e-4), label
        elif method in ("attention", "attention_rollout"):
            check_attention(member, method, ids, start, mine)
        elif method == "adaptation":
            if label != arch.base:
                relative = ours(arch, "occlusion", label) - ours(arch, "occlusion", arch.base)
                assert close(mine, relative, 1e-4) and mine.abs().max() > 1e-4, label
            else:
                assert mine.abs().max() == 0
        else:
            raise AssertionError(f"{method}: a method this test has no reference for; add one")
    if method == "integrated_gradients":
        check_default_integrated_gradients(arch)


def check_default_integrated_gradients(arch: Arch) -> None:
    """The default (the sequential path from the eos token, `explorer.core.attribution.sequential`):
    every target it calls converged is complete within 1% (of the larger of |Δ| and the
    attributions' mass) of Δ = f(x) − f(baseline), the baseline being every source token
    replaced by eos (Gemma 4's per-layer embeddings read the eos token too), recomputed here by
    plain forward passes; it calls most targets converged."""
    attr = fx.attribute(arch.family, PROMPT, RESPONSE, method="integrated_gradients")
    flagged = []
    for label in arch.family.labels:
        member = arch.member(label)
        ids, start = text_ids(member)
        eos = torch.full_like(ids, member.tokenizer.eos_token_id)[None]  # every source at the baseline
        delta = [score_fn(member, ids, start, t)(ids[None]) - score_fn(member, ids, start, t)(eos)
                 for t in range(len(ids) - start)]  # fmt: skip
        matrix = torch.tensor(attr.matrix(label).to_numpy())  # (targets, seq)
        converged = attr.meta["extra"][label]["converged"]
        for row, d, done in zip(matrix, delta, converged, strict=True):
            flagged.append(done)
            scale = max(abs(float(d)), float(row.abs().sum()), 0.05)  # the gap's documented scale
            assert not done or abs(float(row.sum()) - float(d)) <= 0.01 * scale, label
    assert sum(flagged) >= 0.8 * len(flagged)


def check_attention(member, method: str, ids: torch.Tensor, start: int, mine: torch.Tensor) -> None:
    with torch.no_grad():
        att = member.model(input_ids=ids.unsqueeze(0), output_attentions=True).attentions  # layers × (1, heads, seq, seq)
    rows = torch.arange(start - 1, len(ids) - 1)  # the positions that predict the targets
    if method == "attention":
        assert close(mine, att[-1][0].mean(0)[rows])
    else:
        assert close(mine.sum(-1), torch.ones(len(rows)), 1e-5)  # rollout keeps rows normalised


# --- inside the network -------------------------------------------------------------------------


def test_lens(arch):
    """The last layer of the lens is each model's own prediction (soft-capped logits included);
    the copy tuned in its last block has KL exactly 0 before that block and not in it."""
    lens = fx.layer_lens(arch.family, PROMPT, RESPONSE)
    last = arch.n_layers - 1
    assert lens.layer.max() == last
    for label in arch.family.labels:
        ids, start = text_ids(arch.member(label))
        own = lens[(lens.model == label) & (lens.layer == last)].sort_values("position")
        assert close(own.logprob, plain_logprobs(arch.member(label), ids.tolist(), start), 1e-4), label
    tuned = lens[lens.model == arch.tuned]
    assert (tuned[tuned.layer < last].kl_to_base == 0).all()
    assert (tuned[tuned.layer == last].kl_to_base > 1e-4).all()
    assert (lens[lens.model == arch.base].kl_to_base == 0).all()


@pytest.mark.parametrize("site", ["block", "attention", "mlp"])
def test_patching(arch, site):
    """Patching the base with the last-block copy: nothing before that block recovers anything,
    the last block's output everywhere recovers all (the two share the head). The LoRA donor's
    whole last block reproduces its own log-prob, as the two share the final norm and head."""
    last = arch.n_layers - 1
    if (arch.name, f"patch {site}") in CANNOT:
        with pytest.raises(ValueError, match=re.escape(CANNOT[arch.name, f"patch {site}"])):
            fx.patch(arch.family, PROMPT, RESPONSE, donor=arch.tuned, site=site)
        return
    tuned = fx.patch(arch.family, PROMPT, RESPONSE, donor=arch.tuned, site=site)
    before = tuned.df[tuned.df.layer < last]
    assert before.effect.abs().max() == 0 and len(tuned.layers) == last + 1
    assert tuned.meta["shared_head"] and abs(tuned.meta["log_ratio"]) > 1e-3
    if site == "block":
        whole = tuned.layers.set_index("layer").loc[last]
        assert whole.logprob == pytest.approx(tuned.meta["donor_logprob"], abs=1e-4)
        adapter = fx.patch(arch.family, PROMPT, RESPONSE, donor=arch.lora, layers=[last], positions=[0])
        assert adapter.layers.logprob.iloc[0] == pytest.approx(adapter.meta["donor_logprob"], abs=1e-4)
    else:
        assert tuned.layers.set_index("layer").loc[last].effect != 0  # the part really moved
    same = fx.patch(arch.family, PROMPT, RESPONSE, donor=arch.lora, receiver=arch.lora, site=site, preview=False)
    assert same.df.effect.abs().max() == 0


def test_weight_diff(arch):
    """The tuned copy moved exactly its last block's weights; every LoRA row is the norm of
    peft's own delta weight; the embeddings sit before the blocks and the head after them."""
    diff = fx.weight_diff(arch.family)
    base, n = arch.member(arch.base).model, arch.n_layers
    tuned = diff[diff.model == arch.tuned]
    assert len(tuned) == sum(1 for _ in base.named_parameters())
    assert (tuned[tuned.layer == n - 1].change_norm > 1e-3).all()  # zero-initialised biases and norms too
    assert (tuned[tuned.layer != n - 1].change_norm == 0).all()
    assert set(tuned.layer) == {-1, *range(n + 1)} and set(tuned.block) >= {"embed", "head"}
    embed, head = base.get_input_embeddings().weight, base.get_output_embeddings().weight
    assert layer_of(base, tuned, embed) == -1  # a tied head is the same weight, before the blocks
    assert layer_of(base, tuned, head) == (-1 if head is embed else n)
    lora = diff[diff.model == arch.lora].set_index(["layer", "module"])
    adapted = peft_deltas(arch.member(arch.lora).model)
    assert len(adapted) > 0 and set(lora[lora.kind == "lora"].index) == set(adapted)
    for where, delta in adapted.items():
        assert lora.loc[where, "change_norm"] == pytest.approx(delta, rel=1e-4), where
    assert (lora[lora.kind == "full"].change_norm == 0).all()


def layer_of(model, rows, weight: torch.Tensor) -> int:
    name = next(n for n, p in model.named_parameters() if p is weight)
    return int(rows[[name.endswith(m) for m in rows.module]].layer.iloc[0])


def block_place(name: str) -> tuple[int | None, str]:
    """(block index, the name inside the block) of a module or weight; (None, name) outside."""
    parts = name.split(".")
    i = next((k for k, part in enumerate(parts) if part.isdigit()), None)
    return (None, name) if i is None else (int(parts[i]), ".".join(parts[i + 1 :]))


def peft_deltas(model) -> dict[tuple[int, str], float]:
    """‖ΔW‖ of each adapted module from peft's own `get_delta_weight`, by (block, weight name
    inside the block) as the weight diff names them."""
    out = {}
    for name, module in model.get_base_model().named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "get_delta_weight"):
            layer, inside = block_place(name)
            where = (-1, ".".join(name.split(".")[1:])) if layer is None else (layer, inside)  # outside: before
            out[(where[0], where[1] + ".weight")] = float(module.get_delta_weight("default").norm())
    return out


# --- the estimate and the app -------------------------------------------------------------------


@pytest.mark.parametrize("what", ["sample", "cross_score", "attribute"])
def test_estimate(arch, what):
    options = {"samples": arch.samples} if what == "cross_score" else {"prompt": PROMPT, "response": RESPONSE}
    if what == "sample":
        options = {"prompt": PROMPT, "n": 3, "max_new_tokens": 5}
    guess = fx.estimate(arch.family, what, method="grad_x_input", **options)
    weights = sum(p.numel() * p.element_size() for p in arch.member(arch.base).model.parameters())
    assert math.isfinite(guess.seconds) and guess.seconds > 0 and guess.token_passes > 0
    assert guess.memory_bytes >= weights  # the working set holds a model's weights at least


def test_the_app_loads_samples_and_attributes(arch):
    app = fx.Explorer(str(arch.root), store=ModelStore(), confirm_after=1e9, n=2, max_new_tokens=4)
    try:
        assert app.wait(120) and app.state.error == ""
        assert app.state.family.base.label == arch.base and app.state.available == [arch.lora, arch.tuned]
        app.family_panel.members.value = (arch.lora, arch.tuned)
        app.prompt_panel.text.value = PROMPT
        app.sampling_panel.resample.click()
        assert app.wait(120) and app.state.error == "", app.state.error
        assert app.state.samples.models == arch.family.labels and len(app.state.samples.df) == 6
        select = app.responses.columns.children[1].children[-1]
        select.value = select.options[0][1]
        assert app.wait(120) and app.state.error == "", app.state.error
        assert set(app.state.attribution.models) == set(arch.family.labels)
    finally:
        app.close()


# --- more decoders: a lone base each ---------------------------------------------------------------


@pytest.mark.parametrize("model_type", list(MORE))
def test_more_decoders_through_the_lens_and_gradients(model_type, tmp_path):
    """The lens's last block is the model's own prediction (its logit scale included), grad×input
    equals Captum's, and patching a model with itself changes nothing at any block."""
    family = fx.load_family(build_single(tmp_path, model_type), store=ModelStore())
    label = family.base.label
    member = family.load(label)
    ids, start = text_ids(member)
    lens = fx.layer_lens(family, PROMPT, RESPONSE)
    last = lens[lens.layer == lens.layer.max()].sort_values("position")
    assert close(last.logprob, plain_logprobs(member, ids.tolist(), start), 1e-4)
    n = len(ids) - start
    mine = torch.tensor(fx.attribute(family, PROMPT, RESPONSE, method="grad_x_input").matrix(label).to_numpy())
    assert close(mine[[n - 1]], captum_reference(member, "grad_x_input", ids, start, [n - 1]), 1e-4)
    same = fx.patch(family, PROMPT, RESPONSE, donor=label, preview=False)
    assert same.df.effect.abs().max() == 0 and len(same.layers) == 2


@pytest.mark.parametrize("name", ["GPT-2", "Llama"])
def test_an_adapter_on_a_fine_tune_counts_both_changes(name, tmp_path):
    """A LoRA trained on the fine-tuned copy: its change from the base is the copy's plus the
    adapter's, equal to peft's own merge (GPT-2 stores its weights transposed, Conv1D)."""
    root = build_family(tmp_path, name)
    base_label, _, tuned_label = labels(name)
    family = fx.load_family(root, store=ModelStore())
    tuned = family.load(tuned_label).model
    save(lora(tuned, tuned_label, "all-linear"), None, root / "on-tuned", tuned_label, "adapter")
    family = fx.load_family(root, store=ModelStore())
    diff = fx.weight_diff(family, models=["on-tuned"])
    merged = copy.deepcopy(family.load("on-tuned").model).merge_and_unload()
    base = dict(family.load(base_label).model.named_parameters())
    want = {name: float((p - base[name]).norm()) for name, p in merged.named_parameters()}
    n = tuned.config.num_hidden_layers
    assert len(diff) == len(want) and (diff.kind == "lora").sum() > 0
    for full, change in want.items():
        layer, inside = block_place(full)
        if layer is None:  # embeddings, final norm, head: by the end of the name, outside the blocks
            rows = diff[~diff.layer.between(0, n - 1) & np.array([full.endswith(m) for m in diff.module])]
        else:
            rows = diff[(diff.layer == layer) & (diff.module == inside)]
        assert len(rows) == 1 and rows.change_norm.iloc[0] == pytest.approx(change, rel=1e-4, abs=1e-6), full
