"""GGUF files as members: how they are named, and the sentences for files that cannot be used.
(Loading a real GGUF model is the real-model lane's job: tests/test_real_model.py.)"""

from __future__ import annotations

import numpy as np
import pytest

import explorer as fx
from explorer.core.errors import HubUnreachableError, ModelLoadError


def write_gguf(path, arch: str):
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_file_that_is_not_gguf_gets_a_sentence(tmp_path):
    (tmp_path / "broken.gguf").write_bytes(b"no magic here" * 100)
    with pytest.raises(ModelLoadError, match=r"^broken: broken.gguf is not a readable GGUF file \(GGUF magic invalid\)"):
        fx.load_family(tmp_path / "broken.gguf")


def test_an_architecture_transformers_cannot_read_is_named(tmp_path):
    path = write_gguf(tmp_path / "rnn.gguf", "rwkv6")
    with pytest.raises(ModelLoadError, match=r"^rnn: rnn.gguf holds a 'rwkv6' model, which transformers .* cannot read from GGUF \(it reads llama, .*\)"):
        fx.load_family(path)


def test_an_encoder_model_is_refused(tmp_path):
    path = write_gguf(tmp_path / "enc.gguf", "t5encoder")
    with pytest.raises(ModelLoadError, match="'t5encoder' encoder model, not a causal language model"):
        fx.load_family(path)


def test_a_folder_with_two_gguf_files_asks_which(tmp_path):
    folder = tmp_path / "twins"
    folder.mkdir()
    write_gguf(folder / "a.Q4.gguf", "llama")
    write_gguf(folder / "a.Q8.gguf", "llama")
    with pytest.raises(ModelLoadError, match=r"holds 2 GGUF files \(a.Q4.gguf, a.Q8.gguf\); name one"):
        fx.load_family(folder)


def test_a_hub_gguf_is_named_by_repository_and_file_and_says_when_the_hub_is_unreachable():
    family = fx.load_family("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q8_0.gguf")
    ref = family.base
    assert (ref.id, ref.gguf_file, ref.label) == (
        "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", "smollm2-135m-instruct-q8_0.gguf", "smollm2-135m-instruct-q8_0",
    )  # fmt: skip
    with pytest.raises(HubUnreachableError, match="cannot fetch 'HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q8_0.gguf'"):
        family.load(ref.label)


def test_a_missing_gguf_path_is_refused_with_its_name():
    with pytest.raises(ValueError, match=r"^base: no such file or folder './models/none.gguf'"):
        fx.load_family("./models/none.gguf")
    with pytest.raises(ValueError, match=r"^descendants: no such file or folder '/none/x.gguf'"):
        fx.load_family("fable", descendants=["/none/x.gguf"])
