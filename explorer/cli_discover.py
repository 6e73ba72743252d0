"""`family-explorer discover`: what each descendant changed, over a prompt set, from the command
line. Resumable: every finished prompt is written to OUT/units/, so the same command continues
after Ctrl-C, a kill or a closed laptop; a folder holding a run with other settings is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def discover_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="family-explorer discover",
        description="Search a prompt set for what each descendant changed; confirm on fresh samples. Resumable.",
    )
    p.add_argument("--family", required=True, help="'fable', a preset, a hub id, a GGUF file or a folder")
    p.add_argument("--descendant", action="append", default=[], help="a descendant id or folder (repeat)")
    p.add_argument("--prompts", default="auto", help="'probes', 'general', a .txt/.csv/.jsonl file or a sweep folder (default: probes for fable, else general)")
    p.add_argument("--n", type=int, default=8, help="discovery samples per model and prompt (default 8)")
    p.add_argument("--confirm", type=int, default=128, help="fresh samples per model to confirm on (0: propose only)")
    p.add_argument("--top", type=int, default=5, help="words per descendant and direction proposed (default 5)")
    p.add_argument("--rank-by", choices=("excess", "top_k"), default="excess", help="word ranking (top_k: diffing-toolkit's)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--report", action="store_true", help="also write OUT/report.html")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def progress_bar(quiet: bool):
    if quiet:
        return None
    from tqdm.auto import tqdm

    bars: dict = {}

    def progress(part: str, done: int, total: int) -> None:
        bar = bars.setdefault(part, tqdm(desc=part, total=total, unit="prompt"))
        bar.total, bar.n = total, done
        bar.refresh()

    return progress


def discover(argv: list[str]) -> int:
    args = discover_parser().parse_args(argv)
    import explorer as fx

    out = Path(args.out)
    try:
        family = fx.load_family(args.family, descendants=args.descendant or None)
        found = fx.discover(family, args.prompts, n=args.n, n_confirm=args.confirm, top=args.top, rank_by=args.rank_by,
                            temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed, out=out,
                            progress=progress_bar(args.quiet))  # fmt: skip
        write_outputs(found, out, args.report)
    except KeyboardInterrupt:
        print("\nfamily-explorer discover: interrupted; finished prompts are saved — re-run the same command to resume.",
              file=sys.stderr)  # fmt: skip
        return 130
    except (ValueError, TypeError, OSError) as err:
        print(f"family-explorer discover: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(found.summary())
        for sentence in found.decided()["sentence"].head(20):
            print(" ", sentence)
        print(f"\nwritten to {out.resolve()}")
    return 0


def write_outputs(found, out: Path, report: bool) -> None:
    """The Discovery (discovery.json, lossless) and its tables as CSV; the report on request."""
    found.save(out / "discovery.json")
    for name in ("df", "words", "candidates", "findings"):
        getattr(found, name).to_csv(out / f"{'divergence' if name == 'df' else name}.csv", index=False)
    if report:
        import explorer as fx

        fx.report(found, out / "report.html")
