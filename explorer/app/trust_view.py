"""The Attribution tab's two checks, as views: which method explains this response (beside the
method choice) and whether a descendant differs from the base beyond the method's noise
(under the per-model bars). They lay out what the state holds; the controller computes it."""

from __future__ import annotations

import ipywidgets as w

from explorer.app.derived import spread_method
from explorer.attribution_text import agreement_html, faithfulness_html


class FaithfulnessBox(w.VBox):
    """Beside the method choice: the methods measured on this response; a button measures the rest."""

    def __init__(self, state, ctl) -> None:
        self.state = state
        self.table = w.HTML()
        self.compare = w.Button(description="Measure every method", icon="balance-scale",
                                tooltip="attribute this response with every method and measure how faithful each is")  # fmt: skip
        self.compare.on_click(lambda _: ctl.compare_methods())
        state.observe(self.redraw, names=["faithfulness", "attribution", "family"])
        super().__init__([self.table, self.compare])
        self.redraw()

    def redraw(self, _=None) -> None:
        self.table.value = faithfulness_html(self.state.faithfulness)
        self.compare.disabled = self.state.attribution is None or self.state.family is None  # a replay has no models


class AgreementBox(w.HTML):
    """Under the per-model bars: each descendant against the base, beyond the method's noise."""

    def __init__(self, state) -> None:
        super().__init__()
        self.state = state
        state.observe(self.redraw, names=["agreement"])
        self.redraw()

    def redraw(self, _=None) -> None:
        s = self.state
        base = s.attribution.models[0] if s.attribution is not None else ""
        self.value = agreement_html(s.agreement, base, spread_method(s.method))
