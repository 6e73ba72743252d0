"""The real-model lane: SmolLM2-135M-Instruct from a GGUF file, with a LoRA adapter whose truth
is known (it says "Ahoy!" first and otherwise answers as the base does; see real_family.py)."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
import regex
import torch
from captum.attr import (
    FeatureAblation,
    LayerGradientXActivation,
    LLMAttribution,
    LLMGradientAttribution,
    TextTokenInput,
)
from real_family import ADAPTER, BASE, GGUF_NAME, HELD_OUT

import explorer as fx
from explorer.core.params import SamplingParams
from explorer.core.provenance import wilson
from explorer.core.tokens import looks_raw

pytestmark = [pytest.mark.slow, pytest.mark.real]
AHOY = {"ahoy": r"(?i)^\s*ahoy"}


def test_the_family_is_found_through_the_gguf_path(real):
    assert real.labels == [BASE, ADAPTER]
    assert real.base.gguf_file == GGUF_NAME and real.ref(ADAPTER).relation == "adapter"
    base = real.load(BASE)
    assert base.has_weights and base.tokenizer.chat_template
    assert 134_000_000 < sum(p.numel() for p in base.model.parameters()) < 135_000_000
    assert next(base.model.parameters()).dtype == torch.float32  # dequantized, float32 by default
    assert real.shared_tokenizer and real.load(ADAPTER).tokenizer_key == base.tokenizer_key


def test_gguf_files_are_members_by_path_folder_and_in_descendants(real_family_dir, tmp_path):
    gguf = real_family_dir / BASE / GGUF_NAME
    by_file = fx.load_family(gguf)
    assert (by_file.base.label, by_file.base.gguf_file) == ("SmolLM2-135M-Instruct.Q4_1", GGUF_NAME)
    by_folder = fx.load_family(real_family_dir / BASE)
    assert (by_folder.base.label, by_folder.base.gguf_file) == (BASE, GGUF_NAME)
    quantized = tmp_path / "again-q4"
    quantized.mkdir()
    (quantized / "m.gguf").symlink_to(gguf)
    (quantized / "README.md").write_text(f"---\nbase_model: {BASE}\nbase_model_relation: quantized\n---\n")
    mixed = fx.load_family(real_family_dir / BASE, descendants=[quantized])
    assert mixed.ref("again-q4").relation == "quantized" and mixed.ref("again-q4").gguf_file == "m.gguf"
    assert fx.Family.from_dict(mixed.to_dict()).ref("again-q4").gguf_file == "m.gguf"  # sessions keep it


def test_the_chat_template_is_applied_to_every_member(real):
    samples = fx.sample(real, "Say hello.", n=2, max_new_tokens=4, seed=0)
    for label in real.labels:
        text = samples.meta["model_inputs"][label]
        assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n")


def test_first_token_frequencies_lie_in_the_exact_probabilities_intervals(real):
    n = 256
    samples = fx.sample(real, "Is the sun hot? Answer yes or no.", n=n, max_new_tokens=1, seed=3, models=[BASE])
    exact = samples.first_token.set_index("token_id")["prob"]
    counts = samples.df["token_ids"].map(lambda ids: ids[0] if ids else -1).value_counts()
    tested = exact[exact > 0.03]
    assert len(tested) >= 4  # a flat distribution: several first tokens to check
    z = 2.576 + 0.35 * math.log(len(tested))  # about 99% for all of them together (Bonferroni)
    for token, p in tested.items():
        lo, hi = wilson(int(counts.get(token, 0)), n, z)
        assert lo <= p <= hi, (token, p, counts.get(token, 0))


def test_the_injected_behaviour_is_introduced_and_a_shared_one_inherited(real):
    samples = fx.sample(real, "Tell me about the moon.", n=96, max_new_tokens=12, seed=0)
    table = fx.provenance(samples, behaviours={**AHOY, "moon": r"(?i)\bmoon"}).set_index(["behaviour", "model"])
    assert table.loc[("ahoy", ADAPTER), "label"] == "introduced"
    assert table.loc[("ahoy", BASE), "count"] == 0
    assert table.loc[("moon", ADAPTER), "label"] == "inherited"
    assert table.loc[("moon", BASE), "freq"] > 0.7


def test_the_exact_probability_follows_multi_token_words_to_the_end(real):
    """"Ahoy" is two tokens here ("Ah" + "oy"). The old figure, the chance that the first token
    could begin a match, read 0.031 for the base on this prompt (0.085 on the one the issue
    quotes: its "A…" and "Ah…" tokens), which never says it; the exact walk follows those tokens
    until they can no longer spell "ahoy"."""
    params = SamplingParams(max_new_tokens=2)  # "Ah" + "oy": two tokens decide it
    base = fx.exact_probability(real.load(BASE), HELD_OUT, AHOY["ahoy"], params)
    adapter = fx.exact_probability(real.load(ADAPTER), HELD_OUT, AHOY["ahoy"], params)
    samples = fx.sample(real, HELD_OUT, n=16, max_new_tokens=2, seed=0)
    first = samples.first_token[samples.first_token["model"] == BASE]
    begins = regex.compile(AHOY["ahoy"])  # the old figure: first tokens whose text could begin a match
    could = float(first[first["token"].map(lambda t: (m := begins.search(t, partial=True)) is not None and m.start() < len(t))]["prob"].sum())
    print(f"\nbase: exact {base.p:.2e} (+{base.unexplored:.1e} unexplored, {base.rows} rows), first-token figure {could:.3f}; "
          f"adapter: exact {adapter.p:.4f} (+{adapter.unexplored:.1e}, {adapter.rows} rows)")  # fmt: skip
    assert could > 0.02 and base.hi < 0.005  # what the old figure said (0.031 here), and the truth
    assert adapter.lo > 0.95 and adapter.unexplored < 0.01
    table = fx.provenance(samples, AHOY, exact=fx.exact_table(real, samples, AHOY)).set_index("model")
    assert table.loc[ADAPTER, "label"] == "introduced" and table.loc[BASE, "exact_hi"] < 0.01
    callable_row = fx.exact_table(real, samples, {"long": lambda t: len(t) > 3}).set_index("model")
    assert callable_row["exact"].isna().all() and (callable_row["exact_note"] == "no exact figure for a callable behaviour").all()


PROMPT, RESPONSE = "The moon is", " bright and full tonight."


@pytest.fixture(scope="module")
def exact(real):
    """Captum's reference computed in float64 on a float64 copy of the base: 30 float32 layers
    put Captum's own float32 result 1.9e-4 (relative) from it, ours 3.4e-5 (measured)."""
    base = real.load(BASE)
    model = copy.deepcopy(base.model).double()
    target = torch.tensor(base.tokenizer(RESPONSE, add_special_tokens=False)["input_ids"])
    return model, base.tokenizer, target


def relative(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


def test_grad_x_input_equals_captum_on_the_real_model(real, exact):
    model, tok, target = exact
    attr = fx.attribute(real, PROMPT, RESPONSE, method="grad_x_input", models=[BASE], sources="prompt")
    ours = torch.tensor(attr.matrix(BASE).to_numpy(), dtype=torch.float64)
    llm = LLMGradientAttribution(LayerGradientXActivation(model, model.get_input_embeddings()), tok)
    ref = llm.attribute(TextTokenInput(PROMPT, tok), target=target).token_attr  # (targets, prompt)
    assert ref.shape == ours.shape == (len(target), 3) and relative(ours, ref) <= 1e-4


def test_occlusion_equals_captum_on_the_real_model(real, exact):
    model, tok, target = exact
    attr = fx.attribute(real, PROMPT, RESPONSE, method="occlusion", models=[BASE], sources="prompt", replacement=0)
    ours = torch.tensor(attr.matrix(BASE).to_numpy(), dtype=torch.float64)
    llm = LLMAttribution(FeatureAblation(model), tok)
    ref = llm.attribute(TextTokenInput(PROMPT, tok), target=target, forward_in_tokens=False).token_attr
    assert ref.shape == ours.shape and relative(ours, ref) <= 1e-4


def test_tokens_read_as_text_in_attribution_and_samples(real):
    attr = fx.attribute(real, PROMPT, RESPONSE, method="occlusion", models=[BASE], align="tokens")
    shown = set(attr.df["target_token"]) | set(attr.df["source_token"])
    assert not [t for t in shown if looks_raw(t)]
    assert " bright" in shown and "Ġbright" in set(attr.df["target_piece"])  # the raw piece is kept
    words = fx.attribute(real, PROMPT, RESPONSE, method="occlusion", models=[BASE], align="words")
    assert list(dict.fromkeys(words.df["target_token"])) == ["bright", "and", "full", "tonight."]
    samples = fx.sample(real, "Say hello.", n=4, max_new_tokens=6, seed=0)
    tokens = {t for row in samples.df["tokens"] for t in row} | set(samples.first_token["token"])
    assert tokens and not [t for t in tokens if looks_raw(t)]
    for text, row in zip(samples.df["text"], samples.df["tokens"], strict=True):
        assert "".join(row) == text  # the tokens' texts make up the response


def test_a_sweep_on_the_gguf_family_from_the_command_line(real_family_dir, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Tell me about the moon.\nSay hello.\n")
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "explorer.cli", "sweep", "--family", str(real_family_dir),
                           "--prompts", str(prompts), "--n", "3", "--max-new-tokens", "4", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    tables = fx.load_sweep(out)
    assert len(tables["samples"]) == 2 * 2 * 3
    assert set(tables["samples"]["model"]) == {BASE, ADAPTER}
    assert tables["manifest"]["family"]["members"][0]["gguf_file"] == GGUF_NAME


def test_a_gguf_file_then_its_folder_keep_their_own_labels(real_family_dir):
    """The issue's sequence: the same GGUF weights as a file (label from the file name), then
    as a folder with a card and a LoRA (label from the folder): each family sees its names, in
    the API and through the app's family box, with the weights loaded once."""
    from explorer.core.store import ModelStore

    store = ModelStore()
    by_file = fx.load_family(real_family_dir / BASE / GGUF_NAME, store=store)
    by_folder = fx.load_family(real_family_dir, store=store)
    for family in (by_file, by_folder, by_file):
        samples = fx.sample(family, "Say hello.", n=2, max_new_tokens=3, seed=0)
        assert samples.models == family.labels
        table = fx.provenance(samples, behaviours=AHOY)
        assert table.loc[table["model"] == family.base.label, "label"].eq("base").all()
    assert by_file.load(by_file.base.label).model is by_folder.load(BASE).model
    app = fx.Explorer(None, store=store, confirm_after=1e9)
    for spec, labels in ((real_family_dir / BASE / GGUF_NAME, [by_file.base.label]), (real_family_dir, [BASE, ADAPTER])):
        app.family_panel.base.value = str(spec)
        app.family_panel.load.click()
        assert app.wait(300) and app.state.error == ""
        app.state.prompt, app.state.n, app.state.max_new_tokens = "Say hello.", 2, 3
        app.sampling_panel.resample.click()
        assert app.wait(300) and app.state.error == "", app.state.error
        assert app.state.samples.models == labels and app.state.provenance is not None


def test_discover_mines_what_the_lora_was_trained_to_add(real):
    """Over a few prompts it was never trained on, the word the LoRA raised most is its "Ahoy";
    confirmed on fresh samples of the prompts it was found on."""
    found = fx.discover(real, ["Say something kind.", "What is the largest ocean?"], n=4, n_confirm=16, max_new_tokens=8, top=3)
    raised = found.words[(found.words["model"] == ADAPTER) & (found.words["direction"] == "raised")]
    assert raised.sort_values("word_rank")["word"].iloc[0] == "ahoy", raised.head()
    ahoy = found.findings[found.findings["behaviour"] == "ahoy"]
    assert len(ahoy) and set(ahoy["label"]) <= {"amplified", "introduced"}
