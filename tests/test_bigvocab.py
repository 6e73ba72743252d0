"""Big vocabularies: every full-vocabulary computation in slices gives the numbers the whole one
gives, the estimate's probes stay partial, and the GPU check runs.

Tiny models cannot show memory (the peak at a 262k vocabulary is measured by
benchmarks/bench_bigvocab.py); what these tests pin down is that slicing changes no result:
each computation runs with slices forced down to a few rows (`vocab.CHUNK_ELEMENTS`, the
teacher's and the gradients' `MAX_ELEMENTS`) and is compared with the same computation whole.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import explorer as fx
from explorer.core import provenance, teacher, timing, vocab
from explorer.core.attribution import gradients, ig
from explorer.core.layers.anatomy import anatomy
from explorer.core.local import StepHook, StepStats, generation_config, warpers
from explorer.core.params import SamplingParams

EDIT = ("the capital of sylvane is", " tirwick .")
WHOLE = 10**12


def vocab_of(family) -> int:
    return len(family.load(family.base.label).tokenizer)


def sliced(monkeypatch, elements: int) -> None:
    """Slices of `elements` floats in every reduction over the vocabulary."""
    monkeypatch.setattr(vocab, "CHUNK_ELEMENTS", elements)


def test_reductions_in_slices_equal_the_whole_and_the_textbook(monkeypatch):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 301) * 4  # (batch, positions, vocab)
    logits[1, 2, ::3] = float("-inf")  # a filtered distribution, as top-k leaves it
    other = torch.randn(3, 5, 301) * 4
    ids, index = torch.randint(0, 301, (3, 5)), torch.randint(0, 301, (3, 5, 2))
    logp, logq = torch.log_softmax(logits, -1), torch.log_softmax(other, -1)

    def run():
        return (vocab.token_logprobs(logits, ids), vocab.candidate_logprobs(logits, index),
                *vocab.logprob_and_entropy(logits, ids), *vocab.kl_js(logp, logq))  # fmt: skip

    sliced(monkeypatch, WHOLE)
    whole = run()
    sliced(monkeypatch, 2 * 301)  # two rows a slice: 8 slices of 15 rows, the last one short
    for a, b in zip(whole, run(), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    p = logp.exp()
    textbook = (logp.gather(-1, ids[..., None])[..., 0], logp.gather(-1, index), logp.gather(-1, ids[..., None])[..., 0],
                -(p * logp.nan_to_num(neginf=0.0)).sum(-1), torch.where(p > 0, p * (logp - logq), 0.0).sum(-1))  # fmt: skip
    for a, b in zip(whole, textbook, strict=False):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert vocab.kl_js(logp, logp)[0].abs().max() == 0  # a distribution against itself: exactly 0


def test_sampling_statistics_step_by_step_equal_generates_own_scores(fable, monkeypatch):
    """StepStats against the (n, steps, vocab) scores and logits `generate` can return."""
    member = fable.load("fable-base")
    params = SamplingParams(n=6, temperature=0.8, top_k=30, top_p=0.9, max_new_tokens=7, seed=0)
    ids = torch.tensor([member.tokenizer("the weather today is")["input_ids"]])
    from transformers import LogitsProcessorList, StoppingCriteriaList

    def run(elements):
        sliced(monkeypatch, elements)
        config = generation_config(params, member.model, member.tokenizer, params.n)
        config.output_scores = config.output_logits = True
        hook = StepHook("fable-base", params.max_new_tokens, None, None)
        hook.stats = stats = StepStats(warpers(params))
        torch.manual_seed(0)
        with torch.no_grad():
            out = member.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                        logits_processor=LogitsProcessorList([stats]),
                                        stopping_criteria=StoppingCriteriaList([hook]))  # fmt: skip
        gen = out.sequences[:, ids.shape[1] :]  # (n, steps)
        return gen, out, stats.result(gen.shape[1]), stats.first

    gen, out, (sample_lp, model_lp, entropy), first = run(len(member.tokenizer) * 2)
    raw = torch.log_softmax(torch.stack(out.logits, 1), -1)  # (n, steps, vocab)
    warped = torch.log_softmax(torch.stack(out.scores, 1), -1)
    assert torch.allclose(model_lp, raw.gather(-1, gen[..., None])[..., 0], atol=1e-5)
    assert torch.allclose(sample_lp, warped.gather(-1, gen[..., None])[..., 0], atol=1e-5)
    assert (sample_lp > model_lp).any()  # the warpers changed the distribution it samples from
    assert torch.allclose(entropy, -(raw.exp() * raw).sum(-1), atol=1e-5)
    assert torch.allclose(first, raw[0, 0], atol=1e-6)
    again = run(WHOLE)
    assert torch.equal(again[0], gen)
    for a, b in zip(again[2], (sample_lp, model_lp, entropy), strict=True):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_the_lens_in_slices_equals_the_lens_whole(fable, monkeypatch):
    models = ["fable-base", "fable-late", "fable-pirate", "fable-distilled"]
    sliced(monkeypatch, WHOLE)
    whole = fx.layer_lens(fable, *EDIT, models=models)
    sliced(monkeypatch, 3 * vocab_of(fable))
    parts = fx.layer_lens(fable, *EDIT, models=models)
    pd.testing.assert_frame_equal(whole, parts, atol=1e-6, rtol=1e-5)  # float32 products of other shapes
    late = parts[parts.model == "fable-late"]
    assert (late[late.layer < late.layer.max()]["kl_to_base"] == 0).all()  # exact, as whole
    assert parts.attrs["notes"] == whole.attrs["notes"] and len(parts.attrs["notes"]) == 1


def test_divergence_and_token_shift_in_slices_equal_the_whole(fable, monkeypatch):
    samples = fx.sample(fable, "the weather today is", n=6, max_new_tokens=6, seed=0,
                        models=["fable-base", "fable-cheerful"])  # fmt: skip
    sliced(monkeypatch, WHOLE)
    div = fx.divergence(fable, "the weather today is", " sunny and warm .")
    shift = provenance.token_shift(fable, samples)
    sliced(monkeypatch, 2 * vocab_of(fable))
    monkeypatch.setattr(provenance, "RANK_ELEMENTS", 3 * 6 * vocab_of(fable))  # a few samples per batch
    pd.testing.assert_frame_equal(div, fx.divergence(fable, "the weather today is", " sunny and warm ."), atol=1e-6, rtol=0)
    pd.testing.assert_frame_equal(shift, provenance.token_shift(fable, samples))
    assert (div[div.model == "fable-base"][["kl", "js"]] == 0).all().all()


@pytest.mark.parametrize("method, options", [("grad_x_input", {}), ("occlusion", {}),
                                             ("integrated_gradients", {"n_steps": 6})])  # fmt: skip
def test_attribution_with_small_batches_and_slices_equals_the_whole(fable, monkeypatch, method, options):
    prompt, response = "the weather today is", " rainy . it was a cold day"

    def matrix():
        attr = fx.attribute(fable, prompt, response, method=method, models=["fable-base"], **options)
        return torch.tensor(attr.matrix("fable-base").to_numpy())

    whole = matrix()
    sliced(monkeypatch, 3 * vocab_of(fable))
    for module in (teacher, gradients, ig):  # logits of a row or two, groups of a target or two
        monkeypatch.setattr(module, "MAX_ELEMENTS", 2 * vocab_of(fable) * 4)
    parts = matrix()
    assert whole.abs().max() > 0.01
    assert torch.allclose(whole, parts, atol=1e-5, rtol=1e-5)


def test_rows_without_a_cache_are_scored_in_bounded_batches(fable, monkeypatch):
    member = fable.load("fable-base")
    tok = member.tokenizer
    prefixes = [tok("the weather today is")["input_ids"]] * 5
    conts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("sunny .", "rainy", "a cat sat", "the owl .", ".")]
    whole = teacher.unshared_logprobs(member, prefixes, conts, full=False, cancel=None)
    full = teacher.unshared_logprobs(member, prefixes, conts, full=True, cancel=None)
    monkeypatch.setattr(teacher, "MAX_ELEMENTS", 8 * vocab_of(fable))  # one row a batch
    for a, b in zip(whole, teacher.unshared_logprobs(member, prefixes, conts, full=False, cancel=None), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(full, teacher.unshared_logprobs(member, prefixes, conts, full=True, cancel=None), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_the_estimates_probes_are_partial_and_measured_once_per_shape(fable):
    """The first estimate runs one block of each model shape and never the head beyond one
    position per row; a second estimate runs nothing."""
    timing._timings.clear()
    members = [fable.load(label) for label in fable.labels]
    seen = {"late blocks": 0, "head positions": 0, "calls": 0}

    def block_hook(module, args, out):
        seen["late blocks"] += 1

    def head_hook(module, args):
        seen["calls"] += 1
        seen["head positions"] = max(seen["head positions"], args[0].shape[1])

    handles = [h for m in members for h in (anatomy(m).blocks[1].register_forward_hook(block_hook),
                                            m.model.get_output_embeddings().register_forward_pre_hook(head_hook))]  # fmt: skip
    try:
        first = fx.estimate(fable, "attribute", prompt=EDIT[0], response=EDIT[1], method="grad_x_input")
        assert seen == {"late blocks": 0, "head positions": 0, "calls": 0}  # stopped after block 1
        shapes = len(timing._timings)
        assert 1 < shapes < len(fable.labels)  # the distilled student differs; the others share one
        second = fx.estimate(fable, "attribute", prompt=EDIT[0], response=EDIT[1], method="grad_x_input")
        assert len(timing._timings) == shapes and second.token_passes == first.token_passes
    finally:
        for h in handles:
            h.remove()
    prices = next(iter(timing._timings.values()))
    assert prices.call > 0 and prices.head >= 0 and prices.batched >= 0


def test_the_gpu_check_runs_on_the_cpu():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import gpu_check

    rows = gpu_check.main(["--device", "cpu", "--smoke"])
    works = {(r["model"], r["dtype"], r["work"].split(" ")[0]) for r in rows}
    assert len(works) == 2 * 2 * 4  # two shapes, two dtypes, four kinds of work
    assert all(r["ours"] > 0 for r in rows)
    assert {r["peer_name"] for r in rows} == {"bare generate", "Captum LLMGradientAttribution", "—"}
