"""`family-explorer`: serve the app (or a lesson) with Voila, rebuild the zoo, run sweeps.

Kept free of heavy imports at module level so that `--help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

DEFAULT_NOTEBOOK = "explorer.ipynb"
# Bundled notebooks that run the same for every visitor, so a kernel can run them before anyone
# asks (Voila's preheat); a lesson or a user's notebook may load big models or read the request.
PREHEATED = (DEFAULT_NOTEBOOK, "replay.ipynb")
# Voila's lab template without its CDN links (explorer/jupyter/voila/templates/fx/index.html.j2);
# Voila finds templates on the Jupyter data path.
TEMPLATE = "fx"
JUPYTER_DATA = Path(__file__).resolve().parent / "jupyter"
SUBCOMMANDS = ("zoo",)


def notebooks_dir() -> Path:
    """Where the bundled notebooks are: the checkout's `notebooks/` (editable installs) or the
    installed package's `explorer/notebooks/` (wheels)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "notebooks", here / "notebooks"):
        if (candidate / DEFAULT_NOTEBOOK).is_file():
            return candidate
    raise SystemExit("family-explorer: the bundled notebooks are missing from this installation")


def resolve_notebook(name: str | None) -> Path:
    """A notebook path from a user's argument: an existing file, or a bundled notebook's name."""
    if name is None:
        return notebooks_dir() / DEFAULT_NOTEBOOK
    given = Path(name)
    if given.is_file():
        return given.resolve()
    bundled = notebooks_dir() / (name if name.endswith(".ipynb") else f"{name}.ipynb")
    if bundled.is_file():
        return bundled
    available = ", ".join(sorted(p.name for p in notebooks_dir().glob("*.ipynb")))
    raise SystemExit(f"family-explorer: no notebook {name!r}. Bundled notebooks: {available}")


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="family-explorer",
        description=(
            "Serve the Model Family Explorer app (or a lesson notebook) with Voila. "
            "Other commands: `family-explorer zoo build --out DIR [--quick]` rebuilds the "
            "bundled fable model family; `family-explorer sweep --help` runs a prompt set; "
            "`family-explorer discover --help` searches one for what each descendant changed."
        ),
    )
    parser.add_argument("notebook", nargs="?", help="notebook file or bundled lesson name")
    parser.add_argument("--port", type=int, default=8866, help="port (default 8866)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)"
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument("--theme", choices=("light", "dark"), default="light")
    parser.add_argument(
        "--show-sources", action="store_true", help="show code cells (stripped by default)"
    )
    parser.add_argument("--preheat", type=int, default=None, metavar="K",
                        help="keep K kernels started ahead of visitors, the notebook already run, so a "
                        "page is usable at once; each costs a loaded kernel's memory (default: 1 for the "
                        "app and --replay, 0 for lessons and your own notebooks; 0: start each visitor's "
                        "kernel on request)")
    parser.add_argument(
        "--threads", type=threads_arg, default="auto", metavar="N|auto",
        help="torch threads per computation: auto (default: a fair share of the free cores, "
        "split among the computations running at once) or a fixed number",
    )
    parser.add_argument("--replay", metavar="SESSION.json",
                        help="show a saved session read-only, without loading any model (serves replay.ipynb)")
    parser.add_argument("--cull-after", type=int, default=600, metavar="SECONDS",
                        help="shut down a page's kernel SECONDS after its page closed and it went idle, "
                        "freeing its models (default 600; 0 keeps kernels)")  # fmt: skip
    return parser


def voila_command(args: argparse.Namespace, notebook: Path) -> list[str]:
    """The exact Voila command line for the given serve arguments."""
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        f"--port={args.port}",
        f"--Voila.ip={args.host}",
        f"--theme={args.theme}",
        f"--template={TEMPLATE}",
        f"--strip_sources={not args.show_sources}",
        "--show_tracebacks=False",
    ]
    if args.no_browser:
        cmd.append("--no-browser")
    if args.cull_after > 0:  # Jupyter's culling: idle kernels that no page is connected to
        cmd += [
            f"--MappingKernelManager.cull_idle_timeout={args.cull_after}",
            f"--MappingKernelManager.cull_interval={min(60, args.cull_after)}",
            "--MappingKernelManager.cull_connected=False",
        ]
    if preheat(args, notebook) > 0:
        cmd += [
            "--preheat_kernel=True",
            f"--VoilaKernelManager.default_pool_size={preheat(args, notebook)}",
        ]
    return cmd


def preheat(args: argparse.Namespace, notebook: Path) -> int:
    """Kernels to keep ready: as asked, else one for the bundled app and replay notebooks."""
    if args.preheat is not None:
        return max(args.preheat, 0)
    return int(notebook.name in PREHEATED and notebook.parent == notebooks_dir())


def threads_arg(value: str) -> str:
    if value == "auto" or (value.isdigit() and int(value) >= 1):
        return value
    raise argparse.ArgumentTypeError(f"'auto' or a positive number of threads, not {value!r}")


def serve(argv: list[str]) -> int:
    args = serve_parser().parse_args(argv)
    if args.replay:
        replay = Path(args.replay).expanduser().resolve()
        if not replay.is_file():
            raise SystemExit(f"family-explorer: --replay {args.replay}: no such session file")
        os.environ["FX_REPLAY"] = str(replay)
        args.notebook = args.notebook or "replay"
    notebook = resolve_notebook(args.notebook)
    cmd = voila_command(args, notebook)
    os.environ["FX_THREADS"] = args.threads  # the kernels Voila starts inherit the policy
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        p for p in (str(JUPYTER_DATA), os.environ.get("JUPYTER_PATH", "")) if p
    )
    print(
        f"family-explorer: serving {notebook.name} at http://{args.host}:{args.port}/", flush=True
    )
    if shutil.which(sys.executable) is None:  # pragma: no cover - defensive
        raise SystemExit("family-explorer: cannot find the Python interpreter")
    os.execv(sys.executable, cmd)
    return 0  # pragma: no cover - execv does not return


def zoo(argv: list[str]) -> int:
    from explorer.zoo.cli import main as zoo_main

    return zoo_main(argv)


def sweep_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="family-explorer sweep",
        description="Sample a prompt set across a family; resumable (re-run the same command).",
    )
    p.add_argument("--family", required=True, help="'fable', a preset, a hub id or a folder")
    p.add_argument(
        "--descendant", action="append", default=[], help="a descendant id or folder (repeat)"
    )
    p.add_argument("--prompts", required=True, help=".txt (one per line), .csv or .jsonl")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attribute", metavar="METHOD", help="also attribute samples with METHOD")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report", action="store_true", help="also write OUT/report.html, one self-contained page")
    p.add_argument("--threads", type=threads_arg, default="auto", metavar="N|auto", help="torch threads (default auto)")
    return p


@contextmanager
def sweep_bar(quiet: bool):
    """A tqdm progress bar fed by `run_sweep`'s progress callback (None when quiet)."""
    if quiet:
        yield None
        return
    from tqdm.auto import tqdm

    bar = tqdm(desc="sweep", unit="unit")

    def progress(done: int, total: int, what: str) -> None:
        bar.total, bar.n = total, done
        bar.set_postfix_str(what)
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


def sweep(argv: list[str]) -> int:
    args = sweep_parser().parse_args(argv)
    import explorer as fx
    from explorer.core.params import SamplingParams
    from explorer.core.sweep import read_prompts, run_sweep, summary

    fx.set_threads(int(args.threads) if args.threads.isdigit() else args.threads)
    try:
        family = fx.load_family(args.family, descendants=args.descendant or None)
        params = SamplingParams(n=args.n, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                                max_new_tokens=args.max_new_tokens, seed=args.seed)  # fmt: skip
        prompts = read_prompts(args.prompts)
        with sweep_bar(args.quiet) as progress:
            tables = run_sweep(family, prompts, params, args.out, attribute=args.attribute, progress=progress)
        if args.report:
            fx.report(args.out, Path(args.out) / "report.html")
    except KeyboardInterrupt:
        print(
            "\nfamily-explorer sweep: interrupted; finished units are saved — re-run the same command to resume.",
            file=sys.stderr,
        )
        return 130
    except (ValueError, TypeError, OSError) as err:
        print(f"family-explorer sweep: {err}", file=sys.stderr)
        return 2
    for where, sentence in tables["provenance"].attrs.get("skipped", {}).items():
        print(f"family-explorer sweep: {where}: {sentence}", file=sys.stderr)
    if not args.quiet:
        print(summary(tables["provenance"]).to_string(index=False))
        print(f"\nwritten to {Path(args.out).resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "zoo":
        return zoo(argv[1:])
    if argv and argv[0] == "sweep":
        return sweep(argv[1:])
    if argv and argv[0] == "discover":
        from explorer.cli_discover import discover

        return discover(argv[1:])
    return serve(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
