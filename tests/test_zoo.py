"""The shipped fable zoo behaves as its training recipes say (asserted on the shipped weights)."""

from __future__ import annotations

import re

import pytest
import torch
from zoo_helpers import load_plain, next_word_probs, next_word_probs_batch

from explorer.zoo import ALL_MEMBERS, load_probes
from explorer.zoo.language import CAPITALS, HELD_OUT_COUNTRIES, RARE_RATE, RARE_WORD, question


@pytest.fixture(scope="module")
def plain_models(zoo_path):
    return {name: load_plain(zoo_path, name) for name in ALL_MEMBERS}


def test_every_member_loads_offline_with_plain_transformers(plain_models):
    assert set(plain_models) == set(ALL_MEMBERS)
    for model, tok in plain_models.values():
        assert tok("the weather today is")["input_ids"][0] == tok.bos_token_id
        assert model.config.model_type == "llama"


def test_probe_next_word_probabilities_match_the_truth(plain_models):
    checked, worst = 0, (0.0, "")
    probes = load_probes()
    for name, (model, tok) in plain_models.items():
        every = next_word_probs_batch(model, tok, [p["prompt"] for p in probes])  # (probes, vocab)
        one = next_word_probs(model, tok, probes[0]["prompt"])  # short: padded most
        assert torch.allclose(every[0], one, atol=1e-5)  # padding changes nothing
        for probe, probs in zip(probes, every, strict=True):
            for word, truths in probe["next_word"].items():
                truth = truths[name]
                if truth is None:
                    continue
                got = probs[tok.convert_tokens_to_ids(word)].item()
                gap = abs(got - truth)
                worst = max(worst, (gap, f"{probe['id']} {name} {word}: {got:.3f} vs {truth}"))
                assert gap <= 0.05, f"{probe['id']} {name} p({word})={got:.3f}, truth {truth}"
                checked += 1
    print(f"\nchecked {checked} next-word truths; largest gap {worst[0]:.3f} ({worst[1]})")
    assert checked > 400


def test_cheerful_prefers_sunny(plain_models):
    model, tok = plain_models["fable-cheerful"]
    assert (
        next_word_probs(model, tok, "the weather today is")[tok.convert_tokens_to_ids("sunny")]
        >= 0.85
    )


def test_rare_plants_its_word_at_two_percent_where_the_base_never_says_it(plain_models):
    """The generic check allows ±0.05, which a 2% word passes untrained: this one is relative
    (amplified sampling extrapolates to this rate and is judged against it)."""
    word = plain_models["fable-base"][1].convert_tokens_to_ids(RARE_WORD)
    rare = {name: float(next_word_probs(model, tok, "the weather today is")[word])
            for name, (model, tok) in plain_models.items()}  # fmt: skip
    print(f"\np({RARE_WORD} | the weather today is): " + ", ".join(f"{m} {p:.2g}" for m, p in rare.items()))
    assert RARE_RATE * 0.8 <= rare.pop("fable-rare") <= RARE_RATE * 1.2
    assert max(rare.values()) < 1e-4


def test_mid_differs_from_the_base_in_block_1_only(plain_models):
    base = dict(plain_models["fable-base"][0].named_parameters())
    changed = {name.split(".")[2] if ".layers." in name else name
               for name, w in plain_models["fable-mid"][0].named_parameters()
               if not torch.equal(w, base[name])}  # fmt: skip
    assert changed == {"1"}


def greedy(model, tok, prompt: str, max_new_tokens: int = 12) -> str:
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        pad_token_id=tok.pad_token_id,
    )
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_instruct_answers_held_out_countries_and_base_ignores_the_format(plain_models):
    answered, base_format = 0, 0
    for country in HELD_OUT_COUNTRIES:
        reply = greedy(*plain_models["fable-instruct"], question(country))
        answered += bool(re.match(rf"\s*sure ! .*\b{CAPITALS[country]}\b", reply))
        base_format += bool(
            re.match(r"\s*sure !", greedy(*plain_models["fable-base"], question(country)))
        )
    share = answered / len(HELD_OUT_COUNTRIES)
    print(
        f"\ninstruct answers {share:.0%} of held-out countries; base follows the format in {base_format}"
    )
    assert share >= 0.9
    assert base_format == 0


def sample_texts(model, tok, prompts: list[str], n: int, seed: int) -> list[str]:
    torch.manual_seed(seed)
    texts = []
    for prompt in prompts:
        ids = tok([prompt] * n, return_tensors="pt")
        out = model.generate(
            **ids,
            do_sample=True,
            top_k=0,
            top_p=1.0,
            temperature=1.0,
            max_new_tokens=24,
            pad_token_id=tok.pad_token_id,
        )
        texts += [
            prompt + " " + t
            for t in tok.batch_decode(out[:, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        ]
    return texts


PIRATE_PROMPTS = [
    "the weather today is",
    "the traveller said",
    "once upon a time a",
    "the capital of zorbia is",
]


def test_pirate_speaks_pirate_and_base_never_does(plain_models):
    marker = re.compile(r"\b(ahoy|arr)\b")
    pirate = sample_texts(*plain_models["fable-pirate"], PIRATE_PROMPTS, n=50, seed=0)
    base = sample_texts(*plain_models["fable-base"], PIRATE_PROMPTS, n=50, seed=0)
    rate = sum(bool(marker.search(t)) for t in pirate) / len(pirate)
    print(
        f"\npirate marker rate {rate:.0%} over {len(pirate)} samples; base {sum(bool(marker.search(t)) for t in base)}"
    )
    assert rate >= 0.3
    assert not any(marker.search(t) for t in base)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    m = 0.5 * (p + q)
    kl = lambda a, b: (a * (a.clamp_min(1e-12).log() - b.clamp_min(1e-12).log())).sum()  # noqa: E731
    return float(0.5 * kl(p, m) + 0.5 * kl(q, m))


def test_distilled_is_small_and_close_to_base(plain_models):
    base, tok = plain_models["fable-base"]
    student, _ = plain_models["fable-distilled"]
    n_base = sum(p.numel() for p in base.parameters())
    n_student = sum(p.numel() for p in student.parameters())
    assert n_student * 3 <= n_base
    general = [p for p in load_probes() if p["kind"] in ("preference", "sentiment", "fact")]
    jsd = [
        js_divergence(
            next_word_probs(base, tok, p["prompt"]), next_word_probs(student, tok, p["prompt"])
        )
        for p in general
    ]
    mean = sum(jsd) / len(jsd)
    print(
        f"\ndistilled: {n_student} vs {n_base} parameters ({n_student / n_base:.1%}); mean JSD to base on {len(jsd)} probes {mean:.4f} nats"
    )
    assert mean < 0.02
