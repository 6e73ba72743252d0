"""A member's identity comes from the family that asks for it, never from the store's cache.

The model store shares weights between families (the same folder, GGUF file or adapter loads
once), so two families that give the same weights different labels, relations or parents must
each see their own. A property test runs random sequences of loads in one process against one
store and checks every result; the real-model lane checks the GGUF-file-then-folder sequence of
the issue (tests/test_real_model.py).
"""

from __future__ import annotations

import random
import shutil

import pytest

import explorer as fx
from explorer.core.refs import ModelRef
from explorer.core.store import ModelStore


@pytest.fixture(scope="module")
def zoo_copy(tmp_path_factory, zoo_path):
    """A second folder holding fable-base and fable-pirate (an adapter on another base path),
    with cards that name other labels."""
    root = tmp_path_factory.mktemp("zoo-copy")
    shutil.copytree(zoo_path / "fable-base", root / "origin")
    shutil.copytree(zoo_path / "fable-pirate", root / "pirate-copy")
    card = (root / "pirate-copy" / "README.md").read_text()
    (root / "pirate-copy" / "README.md").write_text(card.replace("base_model: fable-base", "base_model: origin"))
    return root


def _specs(zoo, copy):
    """Ways to ask for a family: (name, callable -> Family)."""
    fable = lambda: fx.load_family("fable")  # noqa: E731
    return [
        ("fable preset", fable),
        ("fable subset", lambda: fable().subset(["fable-pirate"])),
        ("base folder + cheerful", lambda: fx.load_family(zoo / "fable-base", [zoo / "fable-cheerful"])),
        ("cheerful as a base", lambda: fx.load_family(zoo / "fable-cheerful", [zoo / "fable-instruct"])),
        ("renamed refs", lambda: fx.load_family(
            ModelRef(id=str(zoo / "fable-base"), label="root-model"),
            [ModelRef(id=str(zoo / "fable-cheerful"), label="sunny-one", relation="instruct", parent="root-model")])),
        ("renamed adapter", lambda: fx.load_family(
            ModelRef(id=str(zoo / "fable-base"), label="b"),
            [ModelRef(id=str(zoo / "fable-pirate"), label="arr", relation="adapter", adapter=True, parent="b")])),
        ("adapter on another base path", lambda: fx.load_family(copy)),
        ("copy's base with zoo's cheerful", lambda: fx.load_family(copy / "origin", [zoo / "fable-cheerful"])),
    ]  # fmt: skip


def _check(family) -> None:
    """Every member answers with the family's own identity, in refs and in samples."""
    for ref in family.members:
        member = family.load(ref.label)
        assert member.ref == ref, (member.ref, ref)
    samples = fx.sample(family, "the weather today is", n=2, max_new_tokens=2, seed=1)
    assert samples.models == family.labels
    assert [m["label"] for m in samples.family["members"]] == family.labels
    table = fx.provenance(samples, behaviours={"sunny": r"\bsunny\b"})
    assert set(table["model"]) == set(family.labels)
    assert table.loc[table["model"] == family.base.label, "label"].eq("base").all()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_random_load_sequences_keep_each_familys_labels(seed, zoo_path, zoo_copy):
    rng = random.Random(seed)
    specs = _specs(zoo_path, zoo_copy)
    store = ModelStore(max_models=rng.choice([2, 4, 8]))
    for _ in range(8):
        if rng.random() < 0.15:
            store.clear()
            continue
        name, make = rng.choice(specs)
        family = _with_store(make(), store)
        try:
            _check(family)
        except AssertionError as err:
            raise AssertionError(f"seed {seed}, after {name}: {err}") from err


def _with_store(family, store):
    from dataclasses import replace

    return replace(family, store=store)


def test_the_same_weights_under_two_names_in_a_row(zoo_path):
    store = ModelStore()
    first = _with_store(fx.load_family(zoo_path / "fable-base", [zoo_path / "fable-cheerful"]), store)
    second = _with_store(fx.load_family(
        ModelRef(id=str(zoo_path / "fable-base"), label="other-name"),
        [ModelRef(id=str(zoo_path / "fable-cheerful"), label="happy", relation="instruct", parent="other-name")],
    ), store)  # fmt: skip
    _check(first)
    _check(second)
    assert len(store.cached) == 2  # the weights were loaded once for both names
    assert second.load("happy").model is first.load("fable-cheerful").model
    _check(first)  # and the first family still answers with its own names


@pytest.mark.slow
def test_the_family_box_loads_one_family_after_another(store, zoo_path, zoo_copy):
    """Through the app: each load's samples and findings carry that family's names and the
    base is labelled `base` (the GGUF-file-then-folder case is in the real-model lane)."""
    app = fx.Explorer(None, store=store, confirm_after=1e9, n=2, max_new_tokens=3)
    sequence = [("fable", ""), (str(zoo_copy), ""), (str(zoo_path / "fable-cheerful"), str(zoo_path / "fable-instruct")),
                (str(zoo_copy / "origin"), str(zoo_path / "fable-pirate")), ("fable", "")]  # fmt: skip
    for base, extra in sequence:
        app.family_panel.base.value, app.family_panel.extra.value = base, extra
        app.family_panel.load.click()
        assert app.wait(120) and app.state.error == "", app.state.error
        family = app.state.family
        app.sampling_panel.resample.click()
        assert app.wait(120) and app.state.error == "", app.state.error
        assert app.state.samples.models == family.labels
        base_rows = app.state.provenance[app.state.provenance["model"] == family.base.label]
        assert base_rows["label"].eq("base").all() and len(base_rows)
