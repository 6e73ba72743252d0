"""Shared fixtures: the shipped fable zoo, loaded once per test session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Helper modules beside the tests (synthetic models, handmade samples) import by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def zoo_path():
    from explorer.zoo import zoo_dir

    path = zoo_dir()
    if not (path / "fable-base" / "model.safetensors").is_file():
        pytest.fail(f"the fable zoo is not built at {path}")
    return path


@pytest.fixture(scope="session")
def fable(zoo_path):
    """The shipped fable family with its own model store (shared across the session)."""
    import explorer as fx
    from explorer.core.store import ModelStore

    return fx.load_family("fable", store=ModelStore())


@pytest.fixture(scope="session")
def fable_all(fable):
    """The whole zoo (fable-mid and fable-rare too), sharing the default family's store."""
    import explorer as fx

    return fx.load_family("fable-all", store=fable.store)


@pytest.fixture(scope="session")
def fable_tokenizer(zoo_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(zoo_path / "fable-base")


@pytest.fixture(scope="module")
def store():
    """A model store shared by the apps of one test module."""
    from explorer.core.store import ModelStore

    return ModelStore()


@pytest.fixture
def fable_app(store):
    """Makes the widget app on fable (settings as keywords), loaded and error-free."""
    import explorer as fx

    def make(**settings):
        settings.setdefault("confirm_after", 1e9)  # tests that ask first say so
        explorer = fx.Explorer("fable", store=store, **settings)
        assert explorer.wait(120)
        assert explorer.state.error == ""
        return explorer

    return make


@pytest.fixture(scope="session")
def real_family_dir():
    """The real SmolLM2-135M family (GGUF base + a LoRA trained on it), built once per machine."""
    import real_family

    try:
        return real_family.family_dir()
    except real_family.Unavailable as err:  # no package registry: say why, like the vLLM lane
        pytest.skip(f"the real-model family cannot be built here: {err}")


@pytest.fixture(scope="session")
def real(real_family_dir):
    import explorer as fx
    from explorer.core.store import ModelStore

    return fx.load_family(real_family_dir, store=ModelStore())
