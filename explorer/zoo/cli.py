"""`family-explorer zoo build --out DIR [--quick] [--seed N]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="family-explorer zoo", description="The fable model zoo.")
    sub = p.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="train the fable family into a folder")
    build.add_argument("--out", required=True, type=Path, help="output folder")
    build.add_argument("--quick", action="store_true", help="few steps (about a minute)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.add_argument("--threads", default="auto", metavar="N|auto",
                       help="torch threads (default auto: a fair share of the free cores)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from explorer.core.threads import set_threads
    from explorer.zoo.build import build_family

    set_threads(int(args.threads) if args.threads.isdigit() else args.threads)
    manifest = build_family(args.out, quick=args.quick, seed=args.seed, quiet=args.quiet)
    print(json.dumps(manifest, indent=1))
    print(f"fable family written to {args.out.resolve()}")
    return 0
