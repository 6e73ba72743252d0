"""The widget app: `fx.Explorer("fable")` is a widget; display it in a notebook or Voila."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from explorer.app.controller import Controller
from explorer.app.state import AppState
from explorer.app.views import (
    AttributionView,
    Banner,
    DataView,
    FamilyPanel,
    PromptPanel,
    ResponsesView,
    SamplingPanel,
    VariabilityView,
    header,
)

TABS = ["Responses", "Variability", "Attribution", "Data"]


def enable_offline_charts() -> None:
    """Charts render without a CDN (workshops, CI): altair's offline JupyterChart bundle."""
    import altair as alt

    try:
        alt.JupyterChart.enable_offline()
    except Exception as err:  # pragma: no cover - only without vl-convert
        raise RuntimeError(f"offline charts need vl-convert-python and anywidget: {err}") from err


def chart_widget(chart: Any) -> Any:
    """An altair chart as a widget that draws offline (in notebooks and Voila alike)."""
    import altair as alt

    enable_offline_charts()
    return alt.JupyterChart(chart)


class Explorer(w.VBox):
    """The whole app for one family: family, prompt and sampling panels, then tabs."""

    def __init__(
        self, family: Any = "fable", store: Any = None, load: bool = True, **settings: Any
    ) -> None:
        enable_offline_charts()
        self.state = AppState(**settings)
        self.controller = Controller(self.state, store=store)
        self.family_panel = FamilyPanel(self.state, self.controller)
        self.prompt_panel = PromptPanel(self.state, self.controller)
        self.sampling_panel = SamplingPanel(self.state, self.controller)
        self.responses = ResponsesView(self.state, self.controller)
        self.variability = VariabilityView(self.state, self.controller)
        self.attribution = AttributionView(self.state, self.controller)
        self.data = DataView(self.state, self.controller)
        self.tabs = w.Tab(
            children=[self.responses, self.variability, self.attribution, self.data], titles=TABS
        )
        top = w.HBox(
            [self.family_panel, self.prompt_panel, self.sampling_panel],
            layout=w.Layout(flex_flow="row wrap"),
        )
        super().__init__(
            [
                header(),
                Banner(
                    self.state,
                ),
                top,
                self.tabs,
            ],
            layout=w.Layout(width="100%"),
        )
        self.add_class("fx-explorer")
        from explorer.app.lifetime import page_heartbeat

        self.heartbeat = page_heartbeat(on_gone=self.controller.abandon)
        if self.heartbeat is not None:  # under Voila: a closed page stops its run
            self.children = (*self.children, self.heartbeat)
        if load and family is not None:
            if isinstance(family, str):
                self.state.preset = (
                    family if family in self.family_panel.preset.options else self.state.preset
                )
                self.controller.load_family(family)
            else:
                self.controller.assign(family=family, available=[d.label for d in family.descendants],
                                       selected=[d.label for d in family.descendants],
                                       relations={m.label: m.relation for m in family.members})  # fmt: skip

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
