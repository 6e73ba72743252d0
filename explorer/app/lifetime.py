"""In Voila, a page that goes away stops its run.

Voila 0.5 keeps a kernel running after its page closes (its front end never calls the
server's shutdown handler, and a beacon to it is refused without an XSRF cookie), so a workshop
participant who closes the tab mid-run would leave a kernel sampling for nobody. This invisible
widget sends a heartbeat from the page; when the heartbeats stop, the kernel cancels its run.
The heartbeat ticks in a Web Worker because browsers throttle timers of hidden tabs to once a
minute, while messages from a worker are delivered at once. Idle kernels with no page are then
culled by the server (`family-explorer` turns Jupyter's kernel culling on).

Outside Voila (a notebook in JupyterLab) it is not created: closing a notebook tab must not
stop its work.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import anywidget
import traitlets

BEAT_SECONDS = 2.0
GONE_AFTER = 12.0  # seconds without a heartbeat: the page is gone

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
        self, on_gone: Callable[[], None], gone_after: float = GONE_AFTER, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.on_gone, self.gone_after = on_gone, gone_after
        self.last_beat: float | None = None  # None until the page has rendered the widget
        self._fired = False
        self.on_msg(self._beat)
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="explorer-heartbeat", daemon=True).start()

    def _beat(self, _widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("alive"):
            self.last_beat, self._fired = time.monotonic(), False

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            if self.gone() and not self._fired:
                self._fired = True
                self.on_gone()

    def gone(self) -> bool:
        return self.last_beat is not None and time.monotonic() - self.last_beat > self.gone_after

    def close(self) -> None:
        self._stop.set()
        super().close()


def page_heartbeat(on_gone: Callable[[], None]) -> PageHeartbeat | None:
    """The heartbeat widget when this kernel runs under Voila, else None."""
    if os.environ.get("VOILA_BASE_URL") is None:
        return None
    return PageHeartbeat(on_gone)
