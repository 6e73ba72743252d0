"""Every notebook in notebooks/ executes top to bottom (offline), as nbclient runs it."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if path.name == "replay.ipynb":  # it shows a saved session: give it one
        monkeypatch.setenv("FX_REPLAY", str(saved_session(tmp_path / "lesson.json")))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert not errors, errors


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name


def test_the_app_notebook_is_two_cells():
    nb = nbformat.read(NOTEBOOKS[0].parent / "explorer.ipynb", as_version=4)
    assert [c.cell_type for c in nb.cells] == ["code", "code"]


def saved_session(path):
    import explorer as fx

    family = fx.load_family("fable")
    samples = fx.sample(family, "the weather today is", n=8, max_new_tokens=6, seed=0)
    fx.Session(family.to_dict(), samples).save(path)
    return path
