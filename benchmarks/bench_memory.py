"""Memory per Voila session: the RSS of a Jupyter kernel after a full resample and attribution
in the explorer app, for the fable family and for a randomly initialised SmolLM2-135M-shaped
model. (Voila runs one such kernel per open page.)

    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from jupyter_client.manager import start_new_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from synthetic import smollm2_folder, words  # noqa: E402

FLOW = """
import explorer as fx
app = fx.Explorer({family!r}, n=16, max_new_tokens=24, prompt={prompt!r})
assert app.wait(600) and not app.state.error, app.state.error
app.controller.resample(); assert app.wait(600) and not app.state.error, app.state.error
app.controller.choose(app.state.samples.models[0], 0); assert app.wait(600), app.state.error
import os; print("PID", os.getpid())
"""


def rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    value = {
        line.split(":")[0]: line.split()[1]
        for line in status.splitlines()
        if line.startswith(("VmRSS", "VmHWM"))
    }
    return int(value["VmRSS"]) / 1024, int(value["VmHWM"]) / 1024


def measure(family: str, prompt: str) -> tuple[float, float, float]:
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        pid = km.provisioner.process.pid
        idle = rss_mb(pid)[0]
        reply = kc.execute_interactive(textwrap.dedent(FLOW.format(family=family, prompt=prompt)), timeout=900,
                                       output_hook=lambda msg: None)  # fmt: skip
        if reply["content"]["status"] != "ok":
            raise RuntimeError(reply["content"])
        now, peak = rss_mb(pid)
        return idle, now, peak
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> None:
    rows = [("fable (5 models)", *measure("fable", "the weather today is"))]
    folder = smollm2_folder()
    rows.append(("SmolLM2-135M-shaped (1 model, random)", *measure(str(folder), words(8))))
    print("\n| family | kernel idle (MB) | after resample + attribution (MB) | peak (MB) |")
    print("|---|---|---|---|")
    for name, idle, now, peak in rows:
        print(f"| {name} | {idle:.0f} | {now:.0f} | {peak:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
