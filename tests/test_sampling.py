"""Resampling: validation, reproducibility, batching, faithful log-probs, progress and cancel."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from scipy.stats import binom
from tiny import tiny_llama

import explorer as fx
from explorer.core.errors import Cancelled
from explorer.core.scoring import sample_logprobs_under
from explorer.core.store import ModelStore
from explorer.zoo import load_probes

PROMPT = "the weather today is"


@pytest.fixture(scope="module")
def weather(fable):
    return fx.sample(fable, PROMPT, n=24, seed=3, max_new_tokens=12)


def test_one_row_per_model_and_sample_with_the_documented_columns(weather, fable):
    df = weather.df
    assert len(df) == 24 * len(fable.labels)
    for column in ["model", "sample", "seed", "prompt", "text", "tokens", "token_ids", "logprobs",
                   "entropies", "n_tokens", "finish_reason"]:  # fmt: skip
        assert column in df.columns
    assert (
        df.groupby("model")["sample"]
        .apply(list)
        .map(sorted)
        .map(lambda s: s == list(range(24)))
        .all()
    )
    assert (df["n_tokens"] == df["token_ids"].map(len)).all()
    assert set(df["finish_reason"]) <= {"eos", "length"}
    assert set(df["seed"]) == {3}


def test_same_seed_same_samples_new_seed_new_samples(fable, weather):
    again = fx.sample(fable, PROMPT, n=24, seed=3, max_new_tokens=12)
    pd.testing.assert_frame_equal(weather.df, again.df)
    other = fx.sample(fable, PROMPT, n=24, seed=4, max_new_tokens=12)
    assert (other.df["text"] != weather.df["text"]).any()


def test_a_model_samples_the_same_whatever_else_runs(fable, weather):
    alone = fx.sample(fable, PROMPT, n=24, seed=3, max_new_tokens=12, models=["fable-pirate"])
    together = weather.df[weather.df["model"] == "fable-pirate"].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.df, together)


def test_batches_give_the_same_samples_as_one_batch(fable, weather):
    chunked = fx.sample(
        fable, PROMPT, n=24, seed=3, max_new_tokens=12, models=["fable-base"], batch_size=24
    )
    assert chunked.df["text"].tolist() == weather.texts("fable-base")


def test_sampled_logprobs_equal_teacher_forced_rescoring(fable, weather):
    worst = 0.0
    for label in fable.labels:
        rescored = sample_logprobs_under(fable, weather, label)
        for row, lp in zip(weather.df.itertuples(), rescored, strict=True):
            if row.model != label or not row.n_tokens:
                continue
            worst = max(worst, (torch.tensor(row.model_logprobs) - lp).abs().max().item())
    print(f"\nmax |sampled - teacher-forced| log-prob: {worst:.2e}")
    assert worst <= 1e-4


def test_pure_sampling_logprob_is_the_model_logprob(weather):
    for row in weather.df.itertuples():
        assert row.logprobs == pytest.approx(row.model_logprobs, abs=1e-5)


def test_top_k_changes_the_sampling_distribution_only(fable):
    s = fx.sample(fable, PROMPT, n=16, seed=0, top_k=1, models=["fable-base"])
    assert set(s.texts("fable-base")) == {"sunny ."}
    first = s.df.iloc[0]
    assert first["logprobs"][0] == pytest.approx(0.0, abs=1e-6)  # the only allowed token
    assert first["model_logprobs"][0] == pytest.approx(-0.693, abs=0.1)  # log 0.5


def test_first_token_distribution_is_exact(fable, weather):
    ft = weather.first_token[weather.first_token["model"] == "fable-base"].set_index("token")[
        "prob"
    ]
    direct = fx.score_texts(fable, PROMPT, ["sunny"], models=["fable-base"])["sum_logprob"].iloc[0]
    assert ft["sunny"] == pytest.approx(float(torch.tensor(direct).exp()), abs=1e-6)
    assert ft.iloc[:3].index.tolist() == ["sunny", "rainy", "cloudy"]


def test_sunny_frequency_matches_the_truth(fable):
    truth = next(p for p in load_probes() if p["id"] == "weather")["behaviour_truth"]["fable-base"]
    s = fx.sample(fable, PROMPT, n=400, seed=11, models=["fable-base"])
    count = sum("sunny" in t.split() for t in s.texts("fable-base"))
    lo, hi = binom.interval(0.99, 400, truth)
    print(f"\nsunny {count}/400, 99% interval for p={truth}: [{lo:.0f}, {hi:.0f}]")
    assert lo <= count <= hi


def test_a_models_own_generation_config_never_leaks_in(tmp_path, fable_tokenizer):
    folder = tiny_llama(tmp_path / "greedy-ish", fable_tokenizer, top_k=2, temperature=0.05,
                        repetition_penalty=3.0, do_sample=True)  # fmt: skip
    family = fx.load_family(folder, store=ModelStore())
    s = fx.sample(family, PROMPT, n=32, seed=0, max_new_tokens=6)
    for row in s.df.itertuples():
        assert row.logprobs == pytest.approx(row.model_logprobs, abs=1e-5)
    assert s.df["text"].nunique() > 2  # a random model under pure sampling varies


def test_progress_is_reported_and_cancel_stops_within_a_step(fable):
    seen = []
    token = fx.CancelToken()

    def progress(label, done, total):
        seen.append((label, done, total))
        if done == 2:
            token.cancel()

    with pytest.raises(Cancelled):
        fx.sample(
            fable, "once upon a time", n=4, max_new_tokens=20, progress=progress, cancel=token
        )
    assert seen[-1][0] == "fable-base" and seen[-1][1] <= 3


def test_chat_modes(tmp_path, fable_tokenizer):
    folder = tiny_llama(tmp_path / "chatty", fable_tokenizer)
    family = fx.load_family(folder, store=ModelStore())
    with pytest.raises(ValueError, match="chat: 'always' but chatty has no chat template"):
        fx.sample(family, PROMPT, n=1, chat="always")
    tok = family.tokenizer("chatty")
    tok.chat_template = "{% for m in messages %}question : {{ m['content'] }} answer :{% endfor %}"
    s = fx.sample(family, PROMPT, n=2, chat="auto", max_new_tokens=3)
    assert s.meta["model_inputs"]["chatty"] == f"question : {PROMPT} answer :"
    assert s.df["model_input"].iloc[0] == f"question : {PROMPT} answer :"
    raw = fx.sample(family, PROMPT, n=2, chat="never", max_new_tokens=3)
    assert raw.meta["model_inputs"]["chatty"] == PROMPT


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, ValueError, "^n: "),
        ({"n": 10**6}, ValueError, "^n: must be between 1 and 4096"),
        ({"n": 2.5}, TypeError, "^n: "),
        ({"temperature": 0}, ValueError, "^temperature: "),
        ({"temperature": -1.0}, ValueError, "^temperature: "),
        ({"temperature": float("nan")}, TypeError, "^temperature: "),
        ({"top_p": 0}, ValueError, "^top_p: "),
        ({"top_p": 1.5}, ValueError, "^top_p: "),
        ({"top_k": -1}, ValueError, "^top_k: "),
        ({"max_new_tokens": 0}, ValueError, "^max_new_tokens: "),
        ({"max_new_tokens": 10_000}, ValueError, "^max_new_tokens: "),
        ({"seed": -3}, ValueError, "^seed: "),
        ({"chat": "sometimes"}, ValueError, "^chat: "),
        ({"prompt": ""}, ValueError, "^prompt: is empty"),
        ({"prompt": "   \n\t"}, ValueError, "^prompt: is empty"),
        ({"prompt": None}, TypeError, "^prompt: "),
        ({"prompt": "the " * 300}, ValueError, "^prompt: is 301 tokens"),
        ({"models": ["nobody"]}, ValueError, "^model: 'nobody' is not in this family"),
    ],
)
def test_bad_arguments_name_the_argument(fable, kwargs, error, match):
    args = {"prompt": PROMPT, "n": 2, **kwargs}
    with pytest.raises(error, match=match):
        fx.sample(fable, **args)


def test_save_and_load_round_trip_exactly(weather, tmp_path):
    path = tmp_path / "weather.json"
    weather.save(path)
    back = fx.SampleSet.load(path)
    pd.testing.assert_frame_equal(back.df, weather.df)
    pd.testing.assert_frame_equal(back.first_token, weather.first_token)
    assert back.params == weather.params and back.prompt == weather.prompt
    assert back.family == weather.family
    assert back.meta["versions"]["torch"] == torch.__version__


def test_truncated_or_newer_files_fail_clearly(weather, tmp_path):
    path = tmp_path / "s.json"
    weather.save(path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="truncated"):
        fx.SampleSet.load(path)
    path.write_text(text.replace('"version": 1', '"version": 99', 1))
    with pytest.raises(ValueError, match="newer format"):
        fx.SampleSet.load(path)
