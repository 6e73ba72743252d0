"""The page heartbeat (explorer/app/lifetime.py): silence cancels the run only while the kernel
could hear the page. A main loop in a thread stands in for the kernel's; beats are sent as the
page's messages arrive, on that loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from explorer.app.lifetime import PageHeartbeat


@pytest.fixture
def kernel_loop():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@contextlib.contextmanager
def heartbeat(gone_after: float, loop: asyncio.AbstractEventLoop | None = None):
    """A heartbeat whose page-gone call records when it came; yields (heart, those moments)."""
    gone: list[float] = []
    heart = PageHeartbeat(lambda: gone.append(time.monotonic()), gone_after=gone_after, loop=loop)
    try:
        yield heart, gone
    finally:
        heart.close()


def beat(loop: asyncio.AbstractEventLoop, heart: PageHeartbeat) -> None:
    loop.call_soon_threadsafe(heart._beat, heart, {"alive": True}, [])


def stall(loop: asyncio.AbstractEventLoop, seconds: float) -> list[float]:
    """The kernel's main thread busy (a big view being drawn): nothing else runs on it. The
    list returned gets the moment the stall ended."""
    ended: list[float] = []

    def busy() -> None:
        time.sleep(seconds)
        ended.append(time.monotonic())

    loop.call_soon_threadsafe(busy)
    return ended


def watch(heart: PageHeartbeat, seconds: float, loop=None, every: float | None = None) -> None:
    """Run for `seconds`, beating every `every` seconds when given."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if every is not None:
            beat(loop, heart)
        time.sleep(every or 0.2)


def test_a_page_that_stops_beating_is_gone(kernel_loop):
    with heartbeat(2.0, kernel_loop) as (heart, gone):
        watch(heart, 3.0, kernel_loop, every=0.5)
        assert gone == []  # beating: alive
        watch(heart, 8.0)
        assert len(gone) == 1 and 2.0 < gone[0] - heart.last_beat < 6.0, (heart.last_beat, gone)


def test_a_busy_kernel_does_not_mistake_its_own_deafness_for_a_closed_page(kernel_loop):
    with heartbeat(2.0, kernel_loop) as (heart, gone):
        watch(heart, 1.5, kernel_loop, every=0.5)
        stall(kernel_loop, 6.0)  # three times gone_after without hearing anything
        watch(heart, 6.5, kernel_loop, every=0.5)  # the page beats on; the beats queue
        watch(heart, 1.5, kernel_loop, every=0.5)  # heard again once the loop is free
        assert gone == [], "a stalled main loop cancelled the run of a page that was still open"
        assert heart.silence() < 1.0


def test_silence_is_counted_from_when_the_kernel_could_hear_again(kernel_loop):
    with heartbeat(2.0, kernel_loop) as (heart, gone):
        watch(heart, 1.0, kernel_loop, every=0.5)
        ended = stall(kernel_loop, 5.0)  # the page closes during the stall: no beat comes after it
        watch(heart, 10.0)
        assert len(ended) == 1 and len(gone) == 1 and 2.0 < gone[0] - ended[0] < 6.0, (ended, gone)


def test_without_a_loop_the_clock_alone_counts():
    with heartbeat(1.5) as (heart, gone):
        heart._beat(heart, {"alive": True}, [])
        watch(heart, 6.0)
        assert len(gone) == 1 and 1.5 < gone[0] - heart.last_beat < 5.0, (heart.last_beat, gone)
