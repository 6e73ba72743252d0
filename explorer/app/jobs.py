"""Running long work off the kernel's main thread, and delivering its results back onto it.

A job runs on a worker thread; what it publishes is queued and applied to the state on the
kernel's main thread (the asyncio loop ipykernel runs cells on), so every observer — views
and their chart building — runs where widgets expect to be touched. Outside a kernel (plain
Python, widget tests) there is no such loop, and updates apply at once.

A generation counter makes a newer job supersede an older one: the old one is cancelled and
anything it still publishes is dropped, also when it was already queued. The newer job's work
starts only once the older one has stopped (within one cancel check): both would use the same
models, and hooks one job puts on a model (a probe's stop, attribution's head cut, the layer
tools' captures) would run inside the other's passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from explorer.app.state import AppState
from explorer.core.errors import Cancelled, ModelLoadError
from explorer.core.params import CancelToken

log = logging.getLogger(__name__)
EXPECTED = (ValueError, TypeError, ModelLoadError, FileNotFoundError, OSError)
PROGRESS_EVERY = 0.25  # seconds between progress messages to the page
SHOW_WAIT = 10.0  # seconds a job waits for its results to be shown before going on


class Job:
    """What a running task may ask: is it still current, was it cancelled; how to report."""

    def __init__(self, runner: Runner, generation: int, name: str) -> None:
        self.runner, self.generation, self.name = runner, generation, name
        self.cancel = CancelToken()
        self.abandoned = False  # nobody is watching: skip the work of showing partial results
        self._last_report, self._reported = 0.0, {}

    @property
    def current(self) -> bool:
        return self.generation == self.runner.generation

    def publish(self, **values: Any) -> None:
        """Queue values for the state, applied on the main thread while this job is current."""
        self.runner.deliver(self.generation, values)

    def show(self, **values: Any) -> None:
        """Publish, and wait (up to SHOW_WAIT seconds) until the main thread has applied the
        values — views drawn, charts built — before going on: work that follows (scoring)
        would otherwise take the cores the page needs to show the results."""
        applied = threading.Event()
        self.runner.deliver(self.generation, values, applied)
        applied.wait(SHOW_WAIT)

    def reporter(self, totals: dict[str, float]) -> Callable[[str, int, int], None]:
        """A core progress callback (label, step, total) that records each part's fraction in
        `totals` and reports them all; the caller may add parts of its own to `totals`."""

        def progress(label: str, step: int, total: int) -> None:
            totals[label] = step / max(total, 1)
            self.report(totals)

        return progress

    def report(self, progress: dict[str, float]) -> None:
        """Publish progress at most every PROGRESS_EVERY seconds (and when a part begins or
        completes): each update is a message to the page, and a busy page slows the work it
        reports on."""
        now = time.monotonic()
        complete = any(v >= 1.0 and self._reported.get(k, 0.0) < 1.0 for k, v in progress.items())
        begins = any(k not in self._reported for k in progress)
        if complete or begins or now - self._last_report >= PROGRESS_EVERY:
            self._last_report, self._reported = now, dict(progress)
            self.publish(progress=dict(progress))


Work = Callable[[Job], dict[str, Any] | None]


class Runner:
    """One job at a time for one app, with main-thread delivery (see the module docstring)."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.generation = 0
        self._job: Job | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._queue: deque[tuple[int | None, dict[str, Any], threading.Event | None]] = deque()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # not in a kernel: deliver at once
            self._loop = None
        self._main = threading.current_thread()

    @property
    def job(self) -> Job | None:
        return self._job

    def assign(self, **values: Any) -> None:
        """Apply values to the state now (the caller is on the main thread)."""
        with self.state.hold_trait_notifications():
            for name, value in values.items():
                setattr(self.state, name, value)

    def deliver(self, generation: int | None, values: dict[str, Any], applied: threading.Event | None = None) -> None:
        """Apply on the main thread: at once when called there (or without a loop), else queued
        for the loop. `generation` None applies whatever job is current; `applied` is set once
        the values were applied (or dropped)."""
        self._queue.append((generation, values, applied))
        if self._loop is None or threading.current_thread() is self._main:
            self.drain()
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop: the kernel is shutting down
                self._loop.call_soon_threadsafe(self.drain)

    def drain(self) -> None:
        """Apply every queued update whose job is still current, in order."""
        while self._queue:
            generation, values, applied = self._queue.popleft()
            try:
                if generation is None or generation == self.generation:
                    self.assign(**values)
            finally:
                if applied is not None:
                    applied.set()

    def submit(self, name: str, work: Work) -> Job:
        """Run `work` on a worker thread; a newer submit supersedes (and cancels) this one."""
        with self._lock:
            if self._job is not None:
                self._job.cancel.cancel()
            self.generation += 1
            job = Job(self, self.generation, name)
            self._job = job
            previous = self._thread
            self._thread = thread = threading.Thread(target=self._run, args=(job, work, previous),
                                                     name=f"explorer-{name}", daemon=True)  # fmt: skip
        self.deliver(job.generation, {"running": name, "error": "", "status": f"{name}…", "progress": {}})
        thread.start()
        return job

    def _run(self, job: Job, work: Work, previous: threading.Thread | None = None) -> None:
        try:
            if previous is not None:
                previous.join()  # cancelled: it stops at its next check, and leaves the models to us
            job.cancel.check()
            job.publish(**(work(job) or {}))
        except Cancelled:
            job.publish(status=f"{job.name} stopped")
        except EXPECTED as err:
            job.publish(error=str(err), status="")
        except Exception as err:  # anything else: a message on the page, the details in the log
            log.exception("%s failed", job.name)
            job.publish(error=f"{job.name} failed unexpectedly ({type(err).__name__}: {err})", status="")
        finally:
            job.publish(running="")

    def stop(self, abandoned: bool = False) -> None:
        """Cancel the job in flight; `abandoned` (nobody is watching) also skips analysing
        partial results."""
        with self._lock:
            if self._job is not None:
                self._job.abandoned = self._job.abandoned or abandoned
                self._job.cancel.cancel()

    def wait(self, timeout: float = 120.0) -> bool:
        """Block until the job in flight ends, then apply what it published (for tests and
        scripts, which may call this on the main thread); True if it ended."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        if threading.current_thread() is self._main:
            self.drain()
        return True
