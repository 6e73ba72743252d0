"""How many torch threads the explorer's own computations use: a fair share of the cores.

torch uses every core by default, and its threads wait for each other at every operation; when
another process holds a core, each step waits for a thread that is not running. Measured on 2
cores with one held by a busy loop: SmolLM2-135M sampling took 14.6 s with 2 threads and 6.2 s
with 1 (6.2 s idle); a fable resample 1.63 s with 2 and 0.43 s with 1.

So each model's sampling, scoring, attribution or training (the outermost, when they nest)
takes `share()` threads for its duration and gives the previous setting back afterwards:
- the cores this process may use, minus the ones other processes kept busy lately (a daemon
  thread reads /proc/stat twice a second; the load average where there is none),
- divided among the explorer computations running at that moment on this machine (each
  announces itself in a small file, so kernels that start together split the cores at once),
- and one thread for tiny models (under 5 M parameters, like the fable zoo), whose
  operations are too small to be worth splitting: fable sampled in 0.30 s with 1 thread and
  0.45 s with 2 on an idle machine.

`set_threads("auto" | N | "off")` or the environment variable `FX_THREADS` choose the policy;
`family-explorer --threads` sets it for its kernels. "off" leaves torch as the user set it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

TINY_PARAMS = 5_000_000
WINDOW = 0.1  # seconds of /proc/stat used to see how busy the other processes are
_setting: str | int = os.environ.get("FX_THREADS", "auto")
_active = threading.local()


def set_threads(policy: str | int) -> None:
    """"auto" (a fair share, the default), a fixed number of threads, or "off"."""
    global _setting
    if isinstance(policy, bool) or not (policy in ("auto", "off") or (isinstance(policy, int) and policy >= 1)):
        raise ValueError(f"threads: 'auto', 'off' or a positive integer, got {policy!r}")
    _setting = policy


def get_threads() -> str | int:
    value = _setting
    return int(value) if isinstance(value, str) and value.isdigit() else value


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float, float] | None:
    """(busy, total) jiffies of the whole machine and this process's own, or None off Linux."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields), float(own[11]) + float(own[12])


class LoadMonitor:
    """Cores kept busy by other processes, kept up to date by a daemon thread that reads
    /proc/stat every half second, so asking costs nothing (where there is no /proc/stat, the
    load average minus this process's own share)."""

    def __init__(self, period: float = 0.5) -> None:
        self.period, self.value = period, None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def busy_elsewhere(self) -> float:
        with self._lock:
            if self._thread is None:
                self.value = measure_busy(WINDOW)
                self._thread = threading.Thread(target=self._watch, name="explorer-load", daemon=True)
                self._thread.start()
        return self.value or 0.0

    def _watch(self) -> None:
        while True:
            self.value = measure_busy(self.period)


def measure_busy(window: float) -> float:
    """Cores kept busy by other processes over the next `window` seconds."""
    before = _cpu_times()
    if before is None:
        time.sleep(window)
        return max(0.0, os.getloadavg()[0] - 1.0) if hasattr(os, "getloadavg") else 0.0
    time.sleep(window)
    after = _cpu_times()
    total = after[1] - before[1]
    if total <= 0:
        return 0.0
    others = (after[0] - before[0]) - (after[2] - before[2])
    return max(0.0, others / total * (os.cpu_count() or 1))


MONITOR = LoadMonitor()


def _registry() -> Path:
    folder = Path(tempfile.gettempdir()) / f"model-family-explorer-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    folder.mkdir(exist_ok=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def computations_running() -> int:
    """Explorer computations announced on this machine now (stale entries are removed)."""
    count = 0
    for entry in _registry().glob("*.run"):
        pid = int(entry.name.split("-")[0]) if entry.name.split("-")[0].isdigit() else -1
        if _alive(pid):
            count += 1
        else:
            entry.unlink(missing_ok=True)
    return count


def share(tiny: bool = False) -> int:
    """The threads one computation should use now (see the module docstring)."""
    setting = get_threads()
    if isinstance(setting, int):
        return setting
    cores = usable_cores()
    if tiny:
        return 1
    free = max(1, round(cores - MONITOR.busy_elsewhere()))
    return max(1, min(free, cores // max(1, computations_running())))


def is_tiny(models: list[Any]) -> bool:
    """Whether every local model here is tiny (served members have no weights here)."""
    sizes = [sum(p.numel() for p in m.parameters()) for m in models if m is not None]
    return bool(sizes) and max(sizes) < TINY_PARAMS


@contextlib.contextmanager
def fair_share(models: list[Any] | None = None, batched: bool = False) -> Iterator[int]:
    """torch threads set to `share()` for the block (the outermost block decides), announced
    to the other explorer computations, and restored afterwards. `batched` work (hundreds of
    rows per pass: integrated gradients' nodes, occlusion) splits well even on a tiny model,
    so the one-thread rule for tiny models does not apply to it (fable IG: 3.9 s with 2
    threads, 6.3 s with 1, on an idle machine)."""
    if get_threads() == "off" or getattr(_active, "depth", 0):
        _active.depth = getattr(_active, "depth", 0) + 1
        try:
            yield torch.get_num_threads()
        finally:
            _active.depth -= 1
        return
    marker = _registry() / f"{os.getpid()}-{threading.get_ident()}.run"
    marker.touch()
    previous, _active.depth = torch.get_num_threads(), 1
    try:
        threads = share(is_tiny(models or []) and not batched)
        torch.set_num_threads(threads)
        yield threads
    finally:
        _active.depth = 0
        torch.set_num_threads(previous)
        marker.unlink(missing_ok=True)
