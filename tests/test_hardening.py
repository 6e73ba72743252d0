"""Bad input never crashes and always explains itself (the API side of hardening)."""

from __future__ import annotations

import re
import shutil

import pytest
from bad_inputs import FAMILIES, SAMPLING
from synthetic import synthetic_tokenizer
from tiny import tiny_llama

import explorer as fx
from explorer.core.errors import ModelLoadError
from explorer.core.store import ModelStore


def fresh(path, **kw):
    return fx.load_family(path, store=ModelStore(), **kw)


def test_corrupt_weights_are_a_clear_error(tmp_path, zoo_path):
    folder = tmp_path / "broken"
    shutil.copytree(zoo_path / "fable-base", folder)
    (folder / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match="broken: the weights in .* could not be read"):
        fresh(folder).load("broken")


def test_a_tokenizer_that_does_not_match_is_refused(tmp_path, zoo_path):
    folder = tmp_path / "mismatch"
    shutil.copytree(zoo_path / "fable-base", folder)
    synthetic_tokenizer(500).save_pretrained(folder)
    with pytest.raises(
        ModelLoadError, match="tokenizer has 500 tokens but the model's vocabulary has"
    ):
        fresh(folder).load("mismatch")


def test_an_adapter_without_its_base_says_so(zoo_path):
    family = fresh(zoo_path / "fable-pirate")
    with pytest.raises(
        ModelLoadError, match="is an adapter but its base model is not in the family"
    ):
        family.load("fable-pirate")


@pytest.mark.parametrize(
    "prompt",
    [
        "the weather\x00 today\x07 is\x1b[31m",
        "the weather today is 🌞🌧️",
        "הַמֶּזֶג הַיּוֹם the weather today is",
        "<script>alert(1)</script> the weather today is",
    ],
    ids=["control-characters", "emoji", "rtl", "markup"],
)
def test_odd_prompts_sample_without_crashing(fable, prompt):
    s = fx.sample(fable, prompt, n=2, max_new_tokens=4, models=["fable-base"])
    assert len(s.df) == 2
    assert s.df["prompt"].iloc[0] == prompt


def test_a_100kb_paste_is_refused_with_the_reason(fable):
    paste = "the weather today is sunny . " * 3500  # ~100 kB
    assert len(paste) > 100_000
    with pytest.raises(ValueError, match="^prompt: is .* tokens for fable-base"):
        fx.sample(fable, paste, n=1)


def test_a_descendant_with_another_vocabulary(tmp_path, zoo_path):
    other = tiny_llama(tmp_path / "other-vocab", synthetic_tokenizer(300))
    family = fx.load_family(zoo_path / "fable-base", descendants=[other], store=ModelStore())
    assert not family.shared_tokenizer
    s = fx.sample(family, "the weather today is", n=4, max_new_tokens=4)
    table = fx.cross_score(family, s)  # re-tokenizes the text for the other scorer
    assert len(table) == 4
    with pytest.raises(ValueError, match="needs a shared tokenizer"):
        fx.log_ratio(family, s)
    with pytest.raises(ValueError, match="needs a shared tokenizer"):
        fx.attribute(family, "the weather today is", "sunny", method="adaptation")
    attr = fx.attribute(family, "the weather today is", "sunny", method="occlusion")
    assert set(attr.models) == {"fable-base", "other-vocab"}


@pytest.mark.parametrize(
    ("values", "message"), [c[1:] for c in SAMPLING], ids=[c[0] for c in SAMPLING]
)
def test_every_bad_sampling_input_in_the_api(fable, values, message):
    args = {"prompt": "the weather today is", "n": 2, "max_new_tokens": 4, **values}
    with pytest.raises(ValueError, match=re.escape(message)):
        fx.sample(fable, **args)


@pytest.mark.parametrize(
    ("make", "message"), [c[1:] for c in FAMILIES], ids=[c[0] for c in FAMILIES]
)
def test_every_bad_family_input_in_the_api(tmp_path, zoo_path, make, message):
    with pytest.raises((ValueError, ModelLoadError), match=re.escape(message)):
        family = fresh(make(tmp_path, zoo_path))
        family.load(family.base.label)
