"""In Voila, a page that goes away stops its run.

Voila 0.5 keeps a kernel running after its page closes (its front end never calls the
server's shutdown handler, and a beacon to it is refused without an XSRF cookie), so a workshop
participant who closes the tab mid-run would leave a kernel sampling for nobody. This invisible
widget sends a heartbeat from the page; when the heartbeats stop, the kernel cancels its run.
The heartbeat ticks in a Web Worker because browsers throttle timers of hidden tabs to once a
minute, while messages from a worker are delivered at once. Idle kernels with no page are then
culled by the server (`family-explorer` turns Jupyter's kernel culling on).

Silence is counted only while the kernel could hear: heartbeats are handled on the kernel's
main thread, so while that thread is busy (a large view being drawn on a loaded workshop
server) they queue unheard, and counting that as silence cancelled runs under users who were
watching them. A watcher asks the main loop for an answer every second; a stall starts the
count afresh once the loop answers again.

Outside Voila (a notebook in JupyterLab) it is not created: closing a notebook tab must not
stop its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

import anywidget
import traitlets

log = logging.getLogger(__name__)

BEAT_SECONDS = 2.0
GONE_AFTER = 30.0  # seconds without a heartbeat, while the kernel could hear one: the page is gone
STALL = 3.0  # seconds without an answer from the main loop: it was busy, not listening

_ESM = """
export default {
  render({ model }) {
    const tick = `setInterval(() => postMessage("beat"), ${model.get("beat_ms")});`;
    const worker = new Worker(URL.createObjectURL(new Blob([tick], { type: "text/javascript" })));
    worker.onmessage = () => model.send({ alive: true });
    model.send({ alive: true });
    return () => worker.terminate();
  },
};
"""


class PageHeartbeat(anywidget.AnyWidget):
    _esm = _ESM
    beat_ms = traitlets.Int(int(BEAT_SECONDS * 1000)).tag(sync=True)

    def __init__(
        self, on_gone: Callable[[], None], gone_after: float = GONE_AFTER,
        loop: asyncio.AbstractEventLoop | None = None, **kwargs,
    ) -> None:  # fmt: skip
        """`loop`: the loop that handles the page's messages (the kernel's, running here when
        the notebook builds the widget); without one, silence is counted by the clock alone."""
        super().__init__(**kwargs)
        self.on_gone, self.gone_after = on_gone, gone_after
        self.last_beat: float | None = None  # None until the page has rendered the widget
        self._fired = False
        self._loop = loop or _running_loop()
        self.last_answer = self.listening_since = time.monotonic()
        self.on_msg(self._beat)
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="explorer-heartbeat", daemon=True).start()

    def _beat(self, _widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("alive"):
            self.last_beat, self._fired = time.monotonic(), False

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            if self._loop is not None:  # a closed loop (the kernel shutting down) raises
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._answer)
            if self.gone() and not self._fired:
                self._fired = True
                log.warning("no heartbeat from the page for %.0f s: its run stops", self.silence())
                self.on_gone()

    def _answer(self) -> None:
        """On the main loop: it is listening. After a stall, silence is counted from now."""
        now = time.monotonic()
        if now - self.last_answer > STALL:
            self.listening_since = now
        self.last_answer = now

    def silence(self) -> float:
        """Seconds without a heartbeat during which the kernel could have heard one: up to the
        main loop's last answer, from its last stall at the earliest."""
        if self.last_beat is None:
            return 0.0
        if self._loop is None:
            return time.monotonic() - self.last_beat
        return max(0.0, self.last_answer - max(self.last_beat, self.listening_since))

    def gone(self) -> bool:
        return self.silence() > self.gone_after

    def close(self) -> None:
        self._stop.set()
        super().close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def page_heartbeat(on_gone: Callable[[], None]) -> PageHeartbeat | None:
    """The heartbeat widget when this kernel runs under Voila, else None."""
    if os.environ.get("VOILA_BASE_URL") is None:
        return None
    return PageHeartbeat(on_gone)
