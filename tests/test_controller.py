"""The controller's logic against a fake core (no models, no sampling): what reaches the
state, Stop, superseding runs, errors as sentences, and main-thread delivery in a kernel."""

from __future__ import annotations

import asyncio
import threading
import time

from fake_core import FakeCore, stand_in_family

from explorer.app.controller import Controller
from explorer.app.state import AppState
from explorer.core.errors import ModelLoadError


def loaded(core: FakeCore, **settings) -> Controller:
    ctl = Controller(AppState(n=3, **settings), core=core)
    ctl.load_family("stand-in")
    assert ctl.wait(10)
    return ctl


def test_loading_publishes_the_family_and_clears_old_results():
    ctl = loaded(FakeCore())
    s = ctl.state
    assert s.family.labels == ["base", "tuned"] and s.available == ["tuned"] == s.selected
    assert s.weights and s.method == "grad_x_input" and s.running == "" and s.error == ""
    assert s.status == "Loaded stand-in: 2 models" and s.samples is None


def test_resample_publishes_every_table_the_tabs_draw():
    ctl = loaded(FakeCore())
    ctl.resample()
    assert ctl.wait(10)
    s = ctl.state
    assert s.samples.models == ["base", "tuned"] and len(s.samples.df) == 6
    assert list(s.variability["model"]) == ["base", "tuned"]
    counts = s.cluster_counts.set_index(["model", "cluster"])["count"]
    assert counts[("base", "sunny")] == 2 and counts[("tuned", "sunny")] == 3
    assert s.first_tokens is not None and s.entropy is not None and s.provenance is not None
    assert s.status.startswith("6 samples from 2 models")


def test_stop_keeps_the_finished_models():
    core = FakeCore(block={"tuned"})
    ctl = loaded(core)
    ctl.resample()
    assert core.sampling.wait(10)  # the second model is sampling
    ctl.stop()
    assert ctl.wait(10)
    s = ctl.state
    assert s.samples.models == ["base"] and s.status == "Stopped: kept the finished models (base)"
    assert s.running == "" and s.error == ""


def test_a_newer_run_supersedes_and_its_predecessor_publishes_nothing():
    core = FakeCore(block={"tuned"})
    ctl = loaded(core)
    first = ctl.resample()
    assert core.sampling.wait(10)
    core.block = set()
    ctl.load_family("stand-in")  # supersedes: cancels the run in flight
    assert ctl.wait(10)
    assert first.cancel.cancelled and not first.current
    assert ctl.state.samples is None and ctl.state.status == "Loaded stand-in: 2 models"


def test_errors_land_in_the_state_as_sentences():
    ctl = Controller(AppState(), core=FakeCore(fail=ModelLoadError("base: no such file or folder 'x'")))
    ctl.load_family("x")
    assert ctl.wait(10)
    assert ctl.state.error == "base: no such file or folder 'x'" and ctl.state.family is None
    ctl = Controller(AppState(), core=FakeCore(fail=KeyError("surprise")))
    ctl.load_family("x")
    assert ctl.wait(10)
    assert ctl.state.error == "Loading failed unexpectedly (KeyError: 'surprise')"


def test_a_family_without_weights_switches_to_forward_only_methods():
    """`Explorer(served_family)` takes the same path as loading a server's address."""
    ctl = Controller(AppState(method="integrated_gradients"), core=FakeCore())
    ctl.use_family(stand_in_family(weights=False))
    assert ctl.wait(10)
    s = ctl.state
    assert not s.weights and s.method == "occlusion"
    assert ctl.set_method("grad_x_input") is None
    assert "needs the models' weights" in s.error and s.method == "occlusion"


def test_in_a_kernel_results_reach_the_state_on_the_main_thread():
    """With a running event loop (as in ipykernel), a worker's updates are queued for it."""
    seen: list[str] = []

    async def main() -> None:
        ctl = Controller(AppState(n=3), core=FakeCore())
        ctl.state.observe(lambda c: seen.append(threading.current_thread().name), names="samples")
        ctl.use_family(stand_in_family())
        while ctl.state.family is None or ctl.state.running:
            await asyncio.sleep(0.01)
        ctl.resample()
        while ctl.state.samples is None or ctl.state.running:
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(main(), 10))
    assert seen and set(seen) == {threading.main_thread().name}


def test_wait_on_the_main_thread_applies_what_the_job_queued():
    async def main() -> Controller:
        ctl = Controller(AppState(n=3), core=FakeCore())
        ctl.use_family(stand_in_family())
        assert ctl.wait(10)  # blocks the loop: wait itself applies the queued results
        return ctl

    ctl = asyncio.run(main())
    assert ctl.state.family is not None and ctl.state.running == ""


def test_long_work_asks_first_and_runs_only_when_confirmed():
    core = FakeCore()
    ctl = loaded(core, confirm_after=5.0)
    core.cost = 40.0
    ctl.resample()
    assert ctl.wait(10)
    s = ctl.state
    assert s.confirm == "Sampling ≈ 40 s on this machine (stand-ins; ≈ 0 MiB) — Run or Cancel?"
    assert s.samples is None and core.calls == []  # nothing ran yet
    ctl.decline()
    assert s.confirm == "" and s.samples is None and "nothing changed" in s.status
    ctl.resample()
    assert ctl.wait(10)
    ctl.confirm()
    assert ctl.wait(10)
    assert s.confirm == "" and s.samples.models == ["base", "tuned"] and core.calls == ["base", "tuned"]
    core.cost = 2.0  # under the threshold: runs at once
    ctl.resample()
    assert ctl.wait(10) and s.confirm == "" and core.calls == ["base", "tuned"] * 2


def test_a_newer_job_starts_only_after_the_one_it_supersedes_has_stopped():
    """Both would use the same models: hooks one job puts on a model must not run inside the
    other's passes. The old job here reaches its cancel check only after 0.4 s."""
    from explorer.app.jobs import Runner

    runner, spans, inside = Runner(AppState()), {}, threading.Event()

    def slow(job) -> None:
        spans["old"] = [time.monotonic()]
        inside.set()
        time.sleep(0.4)  # a long step between two cancel checks (a forward pass of a big model)
        spans["old"].append(time.monotonic())
        job.cancel.check()

    def quick(job) -> dict:
        spans["new"] = [time.monotonic()]
        return {"status": "done"}

    old = runner.submit("Old", slow)
    assert inside.wait(5)
    runner.submit("New", quick)
    assert runner.wait(5)
    assert old.cancel.cancelled and spans["new"][0] >= spans["old"][1]
    assert runner.state.status == "done" and runner.state.running == ""
