"""A family served by a real vLLM CPU server agrees with the same weights run locally.

The server serves fable-base plus the fable-pirate LoRA adapter (the zoo's shipped weights); the
local backend loads the same folders. Skipped, with the reason, only when vLLM's CPU build
cannot be installed here (`python tests/vllm_server.py --install`)."""

from __future__ import annotations

import json
import threading
import time

import pytest
import torch

import explorer as fx
from explorer.core.errors import ModelLoadError
from explorer.core.provenance import wilson
from explorer.core.served.backend import OpenAIBackend, ServerUnavailableError, register_backend

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

PROMPTS = ["the weather today is", "once upon a time a fox went to the river . it ended",
           "the parrot says"]  # fmt: skip
RESPONSES = ["sunny .", "rainy . the end", "happily .", "ahoy .", "arr . the parrot"]


@pytest.fixture(scope="module")
def server():
    from vllm_server import Unavailable, fable_server

    srv = fable_server()
    try:
        srv.start()
    except Unavailable as err:
        pytest.skip(f"vLLM's CPU build cannot be installed here: {err}")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def served(server):
    return fx.load_family(server.url, base="fable-base")


@pytest.fixture(scope="module")
def local(fable):
    return fable.subset(["fable-pirate"])


def test_adapters_are_listed_as_descendants(served, server):
    assert served.labels == ["fable-base", "fable-pirate"]
    pirate = served.ref("fable-pirate")
    assert pirate.adapter and pirate.parent == "fable-base" and pirate.server == server.url
    assert not served.has_weights and served.shared_tokenizer
    again = fx.load_family(server.url)  # the only base on the server is found without a name
    assert again.labels == served.labels


def test_served_tokenizer_is_the_local_one(served, fable_tokenizer):
    tok = served.tokenizer("fable-base")
    for text in PROMPTS + RESPONSES:
        assert tok(text)["input_ids"] == fable_tokenizer(text)["input_ids"], text
    ids = fable_tokenizer("the weather today is sunny")["input_ids"]
    assert tok.convert_ids_to_tokens(ids[1:]) == fable_tokenizer.convert_ids_to_tokens(ids[1:])


def test_teacher_forced_logprobs_match_local_weights(served, local):
    diffs = []
    for prompt in PROMPTS:
        remote = fx.score_texts(served, prompt, RESPONSES, chat="never")
        mine = fx.score_texts(local, prompt, RESPONSES, chat="never")
        for a, b in zip(remote["logprobs"], mine["logprobs"], strict=True):
            assert len(a) == len(b)
            diffs += [abs(x - y) for x, y in zip(a, b, strict=True)]
    print(
        f"\nserved vs local teacher-forced log-probs: {len(diffs)} tokens, max |diff| {max(diffs):.2e}"
    )
    assert max(diffs) <= 1e-3


def test_base_and_adapter_requests_in_one_batch_stay_apart(served, fable):
    """vllm-project/vllm#48421: on CPU, base requests batched with adapter requests could get
    the adapter in the last LoRA slot. Send both at once, many times: every request's
    next-token log-probs must be its own model's."""
    prompt = "the parrot says"
    want = {}
    for label in served.labels:
        loaded = fable.load(label)
        ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            want[label] = torch.log_softmax(loaded.model(ids).logits[0, -1], -1)  # (vocab,)
    backend = served.load("fable-base").backend
    ids = served.tokenizer("fable-base")(prompt)["input_ids"]
    jobs = [label for _ in range(12) for label in served.labels]

    def next_token(label):
        body = backend.complete({"model": label, "prompt": ids, "max_tokens": 1, "logprobs": 5,
                                 "temperature": 1.0, "return_tokens_as_token_ids": True})  # fmt: skip
        top = body["choices"][0]["logprobs"]["top_logprobs"][0]
        return {int(k.split(":")[1]): v for k, v in top.items()}

    for label, top in zip(jobs, backend.map(next_token, jobs), strict=True):
        for token, lp in top.items():
            assert abs(lp - float(want[label][token])) <= 1e-3, (label, token)


def test_sampled_frequencies_agree_with_local_sampling(served, local):
    n = 300
    for prompt, word in [("the weather today is", "sunny"), ("the parrot says", "ahoy")]:
        remote = fx.sample(served, prompt, n=n, max_new_tokens=3, seed=1, chat="never")
        mine = fx.sample(local, prompt, n=n, max_new_tokens=3, seed=1, chat="never")
        for label in served.labels:
            a = int(
                remote.df[remote.df["model"] == label]["text"].str.split().str[0].eq(word).sum()
            )
            b = int(mine.df[mine.df["model"] == label]["text"].str.split().str[0].eq(word).sum())
            (lo_a, hi_a), (lo_b, hi_b) = wilson(a, n, z=3.29), wilson(b, n, z=3.29)  # 99.9%
            print(f"\n{label} '{prompt}' → {word}: served {a}/{n}, local {b}/{n}")
            assert lo_a <= hi_b and lo_b <= hi_a, (label, prompt, a, b)
    assert remote.meta["engine"]["engine_version"] == "0.32.0"
    assert remote.meta["engine"]["models"] == {
        "fable-base": "fable-base",
        "fable-pirate": "fable-pirate",
    }


def test_per_token_logprobs_of_samples_match_rescoring(served, local):
    samples = fx.sample(served, "the weather today is", n=8, max_new_tokens=6, seed=3, chat="never")
    rescored = fx.cross_score(local, samples)
    row = samples.df.iloc[0]
    assert (
        len(row["tokens"]) == len(row["token_ids"]) == len(row["model_logprobs"]) == row["n_tokens"]
    )
    assert row["text"] == " ".join(row["tokens"])  # the word-level vocabulary joins with spaces
    from explorer.core.scoring import sample_logprobs_under

    local_lp = sample_logprobs_under(local, samples, "fable-base")
    base = samples.df["model"] == "fable-base"
    for sampled, lp in zip(
        samples.df[base]["model_logprobs"],
        [x for x, b in zip(local_lp, base, strict=True) if b],
        strict=True,
    ):
        assert torch.allclose(torch.tensor(sampled), lp, atol=1e-3)
    assert set(rescored["scorer"]) == {"fable-base", "fable-pirate"}
    ended = samples.df[samples.df["finish_reason"] == "eos"]  # fable sentences end ". <eos>"
    assert len(ended) > 0 and all(tokens[-1] == "." for tokens in ended["tokens"])
    first = samples.first_token[samples.first_token["model"] == "fable-base"]
    assert abs(first["prob"].sum() - 1) < 0.02 and first.iloc[0]["token"] == "sunny"


def test_seeds_reproduce_and_new_seeds_resample(served):
    a = fx.sample(served, "once upon a time", n=12, max_new_tokens=8, seed=5, chat="never")
    b = fx.sample(served, "once upon a time", n=12, max_new_tokens=8, seed=5, chat="never")
    c = fx.sample(served, "once upon a time", n=12, max_new_tokens=8, seed=6, chat="never")
    assert list(a.df["text"]) == list(b.df["text"])
    assert list(a.df["text"]) != list(c.df["text"])
    assert a.df["text"].nunique() > 3  # n samples per request are distinct draws


def test_occlusion_and_adaptation_match_local(served, local):
    bos = served.tokenizer("fable-base").bos_token_id
    for method in ["occlusion", "adaptation"]:
        remote = fx.attribute(
            served, "the parrot says", "ahoy . the end", method=method, replacement=bos
        )
        mine = fx.attribute(
            local, "the parrot says", "ahoy . the end", method=method, replacement=bos
        )
        diff = (remote.df["score"] - mine.df["score"]).abs().max()
        print(f"\n{method}: served vs local max |diff| {diff:.2e}")
        assert diff <= 1e-3 and mine.df["score"].abs().max() > 0.01


def test_gradient_methods_and_divergence_say_they_need_weights(served):
    with pytest.raises(ValueError, match="needs the models' weights"):
        fx.attribute(served, "the parrot says", "ahoy .", method="grad_x_input")
    samples = fx.sample(served, "the parrot says", n=2, max_new_tokens=2, chat="never")
    with pytest.raises(ValueError, match="top-k log-probs only"):
        fx.divergence(served, "the parrot says", "ahoy .")
    assert len(samples.df) == 4


def test_layer_tools_say_they_need_weights(served):
    for tool in (lambda: fx.layer_lens(served, "the parrot says", "ahoy ."),
                 lambda: fx.patch(served, "the parrot says", "ahoy .", donor=served.descendants[0].label),
                 lambda: fx.weight_diff(served)):  # fmt: skip
        with pytest.raises(ValueError, match="is served, and the layer-wise tools need its weights"):
            tool()


def test_discover_says_what_a_server_cannot_give(served):
    """Top-20 log-probs would make KL a bound and hide the tokens outside them: a sentence."""
    with pytest.raises(ValueError, match="top-20 log-probs per token, so KL would be a bound, not a value"):
        fx.discover(served, ["the parrot says"], n=2)


def test_unknown_model_names_are_refused(server):
    with pytest.raises(ModelLoadError, match="does not serve 'nope'"):
        fx.load_family(server.url, base="fable-base", descendants=["nope"])


def test_killing_the_server_mid_sweep_then_resuming(server, served, tmp_path):
    from explorer.core.sweep import PromptSpec

    register_backend(OpenAIBackend(server.url, retries=2, backoff=0.2, timeout=20))
    prompts = [PromptSpec(p, {}) for p in PROMPTS * 4]
    params = fx.SamplingParams(n=24, max_new_tokens=12, seed=2, chat="never")
    out = tmp_path / "sweep"
    units = out / "units"
    killer = threading.Thread(target=_kill_after_units, args=(server, units, 3))
    killer.start()
    with pytest.raises(ServerUnavailableError, match="is not answering"):
        fx.run_sweep(served, prompts, params, out)
    killer.join()
    done = sorted(units.iterdir())
    assert 3 <= len(done) < len(prompts) * 2
    for f in done:  # every unit on disk is complete JSON
        json.loads(f.read_text())
    before = {f.name: f.read_text() for f in done}
    server.start()
    tables = fx.run_sweep(served, prompts, params, out)
    assert len(list(units.iterdir())) == len(prompts) * 2
    assert all((units / name).read_text() == text for name, text in before.items())
    assert len(tables["samples"]) == len(prompts) * 2 * 24


def _kill_after_units(server, units, count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if units.is_dir() and len(list(units.iterdir())) >= count:
            server.stop()
            return
        time.sleep(0.05)
    server.stop()


def test_the_app_on_a_served_family(server):
    app = fx.Explorer(server.url, n=8, max_new_tokens=6, prompt="the parrot says", chat="never")
    assert app.wait(120), app.state.error
    s = app.state
    assert s.error == "" and not s.weights and s.available == ["fable-pirate"]
    assert s.method == "occlusion"  # the app's default (grad_x_input) needs weights
    labels = dict((value, label) for label, value in app.attribution.method.options)
    assert labels["grad_x_input"] == "grad_x_input — needs local weights"
    assert labels["occlusion"] == "occlusion"
    app.sampling_panel.resample.click()
    assert app.wait(120) and s.error == ""
    assert s.samples.models == ["fable-base", "fable-pirate"] and len(s.samples.df) == 16
    assert s.samples.meta["engine"]["server"] == server.url
    column = app.responses.columns.children[1]
    column.children[-1].value = column.children[-1].options[0][1]  # attribute a pirate answer
    assert app.wait(120) and s.error == ""
    assert s.attribution.meta["method"] == "occlusion" and set(s.attribution.models) == {
        "fable-base",
        "fable-pirate",
    }
    app.attribution.method.value = "integrated_gradients"
    assert app.wait(60)
    assert "needs the models' weights" in s.error
    assert s.method == "occlusion" and app.attribution.method.value == "occlusion"
    assert app.discover.go.disabled and "needs the models' weights" in app.discover.summary.value


@pytest.mark.browser
def test_a_served_family_in_voila(server):
    """The whole journey in the real page: type the server's address, load, resample,
    attribute; no console or page error (a stale selection index once broke the Compare list)."""
    from browser import browser_page, no_traceback, screenshot
    from browser import served as voila

    with voila() as url, browser_page(height=1100) as page:
        page.goto(url, timeout=120_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('button')].some(b => b.innerText.includes('Resample') && !b.disabled)",
            timeout=120_000,
        )
        page.locator("input[placeholder^='or hub id']").fill(server.url)
        page.get_by_role("button", name="Load").click()
        page.wait_for_function(
            "() => document.body.innerText.includes('Loaded fable-base @')", timeout=120_000
        )
        page.locator("textarea").first.fill("the parrot says")
        page.get_by_role("button", name="Resample").click()
        page.wait_for_function(
            "() => document.querySelectorAll('.fx-responses select').length === 2", timeout=120_000
        )
        page.get_by_role("tab", name="Responses").click()
        page.locator(".fx-responses select").nth(1).select_option(index=0)
        page.get_by_role("tab", name="Attribution").click()
        page.wait_for_function(
            "() => document.body.innerText.includes('occlusion of') && document.querySelectorAll('.vega-embed').length >= 2",
            timeout=120_000,
        )
        options = (
            page.locator("select")
            .filter(has_text="needs local weights")
            .first.inner_text()
            .replace("\xa0", " ")
        )
        assert "grad_x_input — needs local weights" in options and "occlusion" in options
        no_traceback(page)
        screenshot(page, "served-attribution.png", ".fx-explorer")
        assert page.problems == [], page.problems


def test_the_app_given_a_served_family_object_behaves_as_given_its_address(server):
    """`fx.Explorer(served_family)` once left the app thinking it had weights."""
    by_address = fx.Explorer(server.url)
    by_object = fx.Explorer(fx.load_family(server.url, base="fable-base"))
    assert by_address.wait(120) and by_object.wait(120)
    for name in ("weights", "server", "method", "available", "relations", "error"):
        assert getattr(by_object.state, name) == getattr(by_address.state, name), name
    assert not by_object.state.weights and by_object.state.method == "occlusion"
    assert by_object.attribution.method.options == by_address.attribution.method.options
