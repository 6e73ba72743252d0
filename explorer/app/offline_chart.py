"""Charts that draw offline and survive a busy machine: one vega bundle parsed once per page.

altair's offline `JupyterChart` carries vega's whole bundle (0.9 MB of JavaScript) as each
chart's own module, so the page parses it again for every chart. anywidget gives a model two
seconds to load its module and initialise ("[anywidget] Failed to initialize model."), and on a
starved CPU — another process on the core, ten charts arriving at once — parsing the bundle
takes longer: charts failed to draw under load. Here every chart's module is a few lines that
return at once; the bundle travels in a trait of its own and is imported on first render (no
timeout there), once per page: later charts reuse the module already parsed.

Making the bundle takes vl-convert about a second, so it is kept on disk, keyed by the versions
that make it (`~/.cache/model-family-explorer/vega/`): a new kernel reads it in milliseconds.
"""

from __future__ import annotations

import contextlib
import os
from functools import cache
from pathlib import Path
from typing import Any

import altair as alt
import traitlets as t

LOADER = """
function bundle(model) {
  if (!globalThis.__fxVegaBundle) {
    const url = URL.createObjectURL(new Blob([model.get("_fx_bundle")], { type: "text/javascript" }));
    globalThis.__fxVegaBundle = import(url)
      .finally(() => URL.revokeObjectURL(url))
      .catch((err) => { globalThis.__fxVegaBundle = undefined; throw err; });
  }
  return globalThis.__fxVegaBundle;
}
export default {
  async render(ctx) {
    const mod = await bundle(ctx.model);
    return mod.default.render(ctx);
  },
};
"""


def bundle_file() -> Path:
    """Where the bundle is kept between kernels: one file per altair, vl-convert and Vega-Lite
    version, since those make it."""
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    key = f"altair-{alt.__version__}-vl-convert-{vl_convert.__version__}-{vl_version_for_vl_convert()}"
    return Path.home() / ".cache" / "model-family-explorer" / "vega" / f"{key}.js"


@cache
def vega_bundle() -> str:
    """altair's chart module bundled with vega for offline use: made by vl-convert once per
    machine and versions, read from the disk cache by later kernels. Plain `alt.JupyterChart`s
    of the kernel draw offline too."""
    path = bundle_file()
    with contextlib.suppress(OSError):
        alt.JupyterChart._esm, alt.JupyterChart._is_offline = path.read_text(), True
        return str(alt.JupyterChart._esm)
    try:
        alt.JupyterChart.enable_offline()
    except Exception as err:  # pragma: no cover - only without vl-convert
        raise RuntimeError(f"offline charts need vl-convert-python and anywidget: {err}") from err
    bundle = str(alt.JupyterChart._esm)
    with contextlib.suppress(OSError):  # a read-only home only costs the next kernel a second
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        partial.write_text(bundle)
        partial.replace(path)  # atomic: a kernel never reads half a bundle
    return bundle


class OfflineChart(alt.JupyterChart):
    """An altair JupyterChart whose vega bundle is parsed once per page (module docstring)."""

    _esm = LOADER
    _fx_bundle = t.Unicode("").tag(sync=True)

    def __init__(self, chart: Any, **kwargs: Any) -> None:
        super().__init__(chart, _fx_bundle=vega_bundle(), **kwargs)
