"""The widget app: `fx.Explorer("fable")` is a widget; display it in a notebook or Voila."""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as w

from explorer.app.amplify_tab import AmplifyView
from explorer.app.controller import Controller
from explorer.app.discover_view import DiscoverView
from explorer.app.findings_view import FindingsView
from explorer.app.layers_view import LayersView
from explorer.app.panels import Banner, ConfirmBar, FamilyPanel, PromptPanel, SamplingPanel, header
from explorer.app.state import AppState
from explorer.app.tabs import AttributionView, DataView, ResponsesView, VariabilityView
from explorer.core.timing import QUIET

TABS = ["Findings", "Discover", "Responses", "Variability", "Attribution", "Layers", "Amplify", "Data"]


def enable_offline_charts() -> None:
    """Charts render without a CDN (workshops, CI): altair's offline bundle, made once per
    machine (explorer.app.offline_chart); this also imports altair."""
    from explorer.app.offline_chart import vega_bundle

    vega_bundle()


def chart_widget(chart: Any) -> Any:
    """An altair chart as a widget that draws offline (in notebooks and Voila alike)."""
    from explorer.app.offline_chart import OfflineChart

    return OfflineChart(chart)


class Explorer(w.VBox):
    """The whole app for one family: family, prompt and sampling panels, then tabs."""

    def __init__(
        self, family: Any = "fable", store: Any = None, load: bool = True, core: Any = None,
        replay: Any = None, **settings: Any,
    ) -> None:  # fmt: skip
        """`replay`: a saved session file to show read-only, without loading any model (a
        Binder or a weak laptop can show a prepared lesson); the family is then not loaded."""
        self.state = AppState(**settings)
        self.controller = Controller(self.state, store=store, core=core)
        super().__init__(self._build_views(), layout=w.Layout(width="100%"))
        self.add_class("fx-explorer")
        from explorer.app.lifetime import page_heartbeat

        self.heartbeat = page_heartbeat(on_gone=self.controller.abandon)
        if self.heartbeat is not None:  # under Voila: a closed page stops its run
            self.children = (*self.children, self.heartbeat)
        if replay is not None:  # a saved session, shown without loading any model
            self.controller.import_session(replay)
        elif load and family is not None:
            self._start(family)
        threading.Thread(target=self._warm_charts, name="explorer-charts", daemon=True).start()

    def _warm_charts(self) -> None:
        """The charts' machinery (altair with its jsonschema, the vega bundle: 1.5–2.5 s) loads
        after the family, off the path to a usable page, and before the first chart needs it."""
        self.controller.wait(timeout=600)
        with QUIET:  # Python-bound: no estimate times its probes meanwhile (explorer.core.timing)
            enable_offline_charts()

    def _build_views(self) -> list[w.Widget]:
        state, ctl = self.state, self.controller
        self.family_panel = FamilyPanel(state, ctl)
        self.prompt_panel = PromptPanel(state, ctl)
        self.sampling_panel = SamplingPanel(state, ctl)
        self.findings = FindingsView(state, ctl)
        self.discover = DiscoverView(state, ctl)
        self.responses = ResponsesView(state, ctl)
        self.variability = VariabilityView(state, ctl)
        self.attribution = AttributionView(state, ctl)
        self.layers = LayersView(state, ctl)
        self.amplify = AmplifyView(state, ctl)
        self.data = DataView(state, ctl)
        views = [self.findings, self.discover, self.responses, self.variability, self.attribution, self.layers,
                 self.amplify, self.data]  # fmt: skip
        self.tabs = w.Tab(children=views, titles=TABS)
        top = w.HBox([self.family_panel, self.prompt_panel, self.sampling_panel], layout=w.Layout(flex_flow="row wrap"))
        self.confirm_bar = ConfirmBar(state, ctl)
        return [header(), Banner(state), self.confirm_bar, top, self.tabs]

    def _start(self, family: Any) -> None:
        if isinstance(family, str):
            if family in self.family_panel.preset.options:
                self.state.preset = family
            self.controller.load_family(family)
        else:  # a Family made in Python: the same path as loading it by address
            self.controller.use_family(family)

    def wait(self, timeout: float = 120.0) -> bool:
        """Block until the running task ends (scripts and tests)."""
        return self.controller.wait(timeout)

    def close(self) -> None:
        """Closing the app cancels its task in flight (sampling stops within one decoding
        step), so no worker thread outlives the page."""
        self.controller.abandon()
        if getattr(self, "heartbeat", None) is not None:
            self.heartbeat.close()
        super().close()
