"""Families: presets, discovery from model cards, safe and clear loading."""

from __future__ import annotations

import shutil

import pytest
import torch
from tiny import pickled_llama, tiny_bert, tiny_llama

import explorer as fx
from explorer.core.errors import HubUnreachableError, ModelLoadError, UnsafeWeightsError
from explorer.core.store import ModelStore

ZOO_RELATIONS = {
    "fable-base": ("base", None, False),
    "fable-cheerful": ("finetune", "fable-base", False),
    "fable-instruct": ("instruct", "fable-base", False),
    "fable-distilled": ("distillation", "fable-base", False),
    "fable-pirate": ("adapter", "fable-base", True),
    "fable-late": ("finetune", "fable-base", False),
}


def test_discovery_rebuilds_the_zoo_tree_from_model_cards(fable):
    assert fable.base.label == "fable-base"
    got = {m.label: (m.relation, m.parent, m.adapter) for m in fable.members}
    assert got == ZOO_RELATIONS


def test_the_default_zoo_family_is_six_and_the_others_come_by_name(zoo_path):
    assert sorted(fx.load_family("fable").labels) == sorted(ZOO_RELATIONS)
    every = fx.load_family("fable-all")
    assert sorted(every.labels) == sorted([*ZOO_RELATIONS, "fable-mid", "fable-rare"])
    assert {every.ref(m).parent for m in ("fable-mid", "fable-rare")} == {"fable-base"}
    picked = fx.load_family("fable", descendants=["fable-mid", "fable-pirate"])
    assert picked.labels == ["fable-base", "fable-mid", "fable-pirate"]
    assert picked.ref("fable-pirate") == every.ref("fable-pirate")  # the shipped member, adapter and all
    assert fx.list_presets()[:2] == ["fable", "fable-all"]
    with pytest.raises(ValueError, match="'fable-mdi' is not in the fable zoo .*fable-mid"):
        fx.load_family("fable", descendants=["fable-mdi"])


def test_every_member_loads_offline_adapter_included(fable):
    from peft import PeftModel

    for label in fable.labels:
        loaded = fable.load(label)
        assert loaded.ref.label == label
        assert isinstance(loaded.model, PeftModel) == (label == "fable-pirate")
    assert fable.shared_tokenizer


def test_discovery_follows_grandchildren(tmp_path, zoo_path, fable_tokenizer):
    root = tmp_path / "family"
    shutil.copytree(zoo_path / "fable-base", root / "fable-base")
    shutil.copytree(zoo_path / "fable-cheerful", root / "fable-cheerful")
    child = tiny_llama(root / "nested" / "cheerful-child", fable_tokenizer)
    (child / "README.md").write_text(
        "---\nbase_model: fable-cheerful\nbase_model_relation: finetune\n---\n"
    )
    family = fx.load_family(root)
    assert family.labels == ["fable-base", "fable-cheerful", "cheerful-child"]
    assert family.ref("cheerful-child").parent == "fable-cheerful"


def test_two_roots_are_refused(tmp_path, fable_tokenizer):
    tiny_llama(tmp_path / "a", fable_tokenizer)
    tiny_llama(tmp_path / "b", fable_tokenizer)
    with pytest.raises(ModelLoadError, match="exactly one base model"):
        fx.load_family(tmp_path)


def test_explicit_base_and_descendants(zoo_path):
    family = fx.load_family(
        zoo_path / "fable-base",
        descendants=[zoo_path / "fable-cheerful", zoo_path / "fable-pirate"],
    )
    assert family.labels == ["fable-base", "fable-cheerful", "fable-pirate"]
    assert family.ref("fable-pirate").adapter and family.ref("fable-pirate").parent == "fable-base"
    assert family.ref("fable-cheerful").relation == "finetune"


def test_pickled_checkpoint_is_refused_by_default_and_loads_on_opt_in(tmp_path, fable_tokenizer):
    folder = pickled_llama(tmp_path / "pickled", fable_tokenizer)
    family = fx.load_family(folder, store=ModelStore())
    with pytest.raises(UnsafeWeightsError, match="allow_pickle=True"):
        family.load("pickled")
    trusting = fx.load_family(folder, store=ModelStore(allow_pickle=True))
    assert isinstance(trusting.load("pickled").model, torch.nn.Module)


def test_non_causal_model_is_refused(tmp_path, fable_tokenizer):
    with pytest.raises(ModelLoadError, match="not a causal language model"):
        fx.load_family(tiny_bert(tmp_path / "bert", fable_tokenizer))


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("./no/such/folder",), ValueError, "base: no such file or folder"),
        (("",), ValueError, "base: empty"),
        ((42,), TypeError, "base:"),
    ],
)
def test_bad_base_arguments(args, error, match):
    with pytest.raises(error, match=match):
        fx.load_family(*args)


def test_missing_descendant_folder_names_the_argument(zoo_path):
    with pytest.raises(ValueError, match="descendants: no such file or folder"):
        fx.load_family(zoo_path / "fable-base", descendants=["./nope/model"])


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="no model folder"):
        fx.load_family(tmp_path)


def test_hub_presets_fail_clearly_offline():
    with pytest.raises(HubUnreachableError, match="Hugging Face hub"):
        fx.load_family("smollm2")
    with pytest.raises(HubUnreachableError, match="needs network access"):
        fx.discover_descendants("HuggingFaceTB/SmolLM2-135M")
    assert fx.list_presets()[0] == "fable"


def test_store_is_bounded_by_count(zoo_path):
    store = ModelStore(max_models=2)
    family = fx.load_family("fable", store=store)
    for label in ["fable-base", "fable-cheerful", "fable-instruct"]:
        family.load(label)
    assert store.cached == ["fable-cheerful", "fable-instruct"]
    family.load("fable-cheerful")  # a hit moves it to the front
    family.load("fable-distilled")
    assert store.cached == ["fable-cheerful", "fable-distilled"]


def test_store_is_bounded_by_bytes(zoo_path):
    store = ModelStore(max_models=8, max_bytes=4_000_000)  # base is ~2.7 MB in float32
    family = fx.load_family("fable", store=store)
    family.load("fable-base")
    family.load("fable-cheerful")
    assert store.cached == ["fable-cheerful"]
    assert store.n_bytes <= 4_000_000


def test_family_round_trips_through_a_dict(fable):
    again = fx.Family.from_dict(fable.to_dict())
    assert again.members == fable.members
