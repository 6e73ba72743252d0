"""A busy machine: a fable resample (every model × 64 × 24) and an attribution (integrated gradients,
adaptive, every model) idle and with a busy-loop process holding one core, under the explorer's
thread policy ("auto") and under torch's default (every core). Medians of alternating runs;
each busy time as a ratio against the idle time of the same policy in the same run.

    python benchmarks/bench_busy.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

import explorer as fx
from explorer.core.store import ModelStore

PROMPT = "once upon a time a fox went to the river . it ended"
RESPONSE = "happily . the end"


def busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    family = fx.load_family("fable", store=ModelStore())
    work = {
        f"resample {len(family.labels)} × 64 × 24": lambda: fx.sample(family, "the weather today is", n=64, max_new_tokens=24, seed=0),
        f"attribution (IG adaptive, {len(family.labels)} models)": lambda: fx.attribute(family, PROMPT, RESPONSE, path="straight"),
    }
    for fn in work.values():
        fn()  # warm-up
    cores = torch.get_num_threads()
    rows = []
    for policy in ("auto", "off"):
        fx.set_threads(policy)
        if policy == "off":
            torch.set_num_threads(cores)  # torch's default: every core
        for name, fn in work.items():
            idle, busy = [], []
            for _ in range(args.repeats):  # alternate, so drifts hit both alike
                idle.append(timed(fn))
                hog = busy_loop()
                time.sleep(0.5)  # the load monitor sees it
                try:
                    busy.append(timed(fn))
                finally:
                    hog.kill()
                    hog.wait()
                time.sleep(0.5)
            i, b = statistics.median(idle), statistics.median(busy)
            rows.append((name, "explorer (auto)" if policy == "auto" else f"torch default ({cores})", i, b))
    print("\n| work | threads | idle (s) | one core busy (s) | busy / idle |")
    print("|---|---|---|---|---|")
    for name, policy, i, b in rows:
        print(f"| {name} | {policy} | {i:.2f} | {b:.2f} | {b / i:.2f}× |")


if __name__ == "__main__":
    main()
