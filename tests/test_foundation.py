"""The ground every issue stands on: layering, the CLI, the README/CI contract."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from explorer import cli

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_the_serve_flags():
    done = subprocess.run(
        [sys.executable, "-m", "explorer.cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for flag in ("--port", "--host", "--no-browser", "zoo build"):
        assert flag in done.stdout


def test_voila_command_binds_loopback_and_strips_sources_by_default():
    args = cli.serve_parser().parse_args(["--no-browser", "--port", "9999"])
    cmd = cli.voila_command(args, cli.resolve_notebook(None))
    assert "--Voila.ip=127.0.0.1" in cmd
    assert "--port=9999" in cmd
    assert "--strip_sources=True" in cmd
    assert "--no-browser" in cmd
    assert cmd[3].endswith("explorer.ipynb")


def pool(argv: list[str]) -> int:
    """Kernels the Voila command keeps ready for these serve arguments."""
    args = cli.serve_parser().parse_args(argv)
    cmd = cli.voila_command(args, cli.resolve_notebook(args.notebook))
    sizes = [int(a.rsplit("=", 1)[1]) for a in cmd if a.startswith("--VoilaKernelManager.default_pool_size=")]
    assert ("--preheat_kernel=True" in cmd) == bool(sizes)
    return sizes[0] if sizes else 0


def test_serve_keeps_one_kernel_warm_for_the_app_unless_told_and_uses_its_own_template():
    assert pool([]) == 1 and pool(["replay"]) == 1  # the same page for every visitor
    assert pool(["--preheat", "0"]) == 0
    assert pool(["02-variability"]) == 0  # lessons may load big models: only when asked
    assert pool(["02-variability", "--preheat", "2"]) == 2
    cmd = cli.voila_command(cli.serve_parser().parse_args([]), cli.resolve_notebook(None))
    assert f"--template={cli.TEMPLATE}" in cmd
    assert (cli.JUPYTER_DATA / "voila" / "templates" / cli.TEMPLATE / "index.html.j2").is_file()


def test_unknown_notebook_is_a_clear_error():
    done = subprocess.run(
        [sys.executable, "-m", "explorer.cli", "no-such-lesson"], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "no notebook 'no-such-lesson'" in done.stderr
    assert "explorer.ipynb" in done.stderr


def readme_command(marker: str) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    hits = [ln.strip() for ln in lines if ln.strip().startswith("python3 -m venv") and marker in ln]
    assert len(hits) == 1, f"expected one README command containing {marker!r}, got {hits}"
    return hits[0]


def test_ci_runs_exactly_the_readme_test_command():
    command = readme_command("pytest")
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_readme_start_command_serves_the_app():
    assert readme_command("family-explorer").endswith("family-explorer")


def test_code_passes_ruff():
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "explorer", "tests", "benchmarks"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.slow
def test_the_wheel_carries_notebooks_zoo_and_probes(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"explorer/notebooks/{nb.name}" in names
    assert "explorer/zoo/models/probes.json" in names
    assert "explorer/prompts/general.jsonl" in names  # Discover's general prompt set
    assert "explorer/jupyter/voila/templates/fx/index.html.j2" in names  # the page without a CDN
    assert "explorer/jupyter/voila/templates/fx/conf.json" in names
    for member in ("fable-base", "fable-cheerful", "fable-instruct", "fable-distilled", "fable-late", "fable-mid", "fable-rare"):
        assert f"explorer/zoo/models/{member}/model.safetensors" in names
        assert f"explorer/zoo/models/{member}/README.md" in names
    assert "explorer/zoo/models/fable-pirate/adapter_model.safetensors" in names
    for module in (ROOT / "explorer").rglob("*.py"):  # every sub-package made it in
        assert module.relative_to(ROOT).as_posix() in names
