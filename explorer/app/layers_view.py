"""The Layers tab: where inside the network each adaptation acts, for the chosen response.

Lays out what `state.inside` holds (explorer.core.layers.inside.Inside): the lens heatmaps and
KL lines of every model, the patching heatmaps of each descendant into the base, the weight
diff, and sentences for what was left out. Computing is the controller's (Look inside).
"""

from __future__ import annotations

import ipywidgets as w

from explorer import layer_charts
from explorer.app.state import AppState
from explorer.app.steer_view import DiffPanel
from explorer.app.widgets import chart_box, escape, show_chart
from explorer.core.layers import SITES
from explorer.core.layers.lens import parting

INTRO = (
    "Where in the network did each adaptation act? The <b>layer lens</b> reads every block's residual "
    "stream through the model's own final norm and head; <b>patching</b> runs the base with one "
    "site taking a descendant's activation and shows how much of the descendant's answer that site "
    "carries; the <b>weight diff</b> shows which modules' weights moved, and the <b>spectra</b> the shape of each "
    "change (a LoRA's effective rank is at most its rank)."
)


class LayersView(w.VBox):
    def __init__(self, state: AppState, ctl) -> None:
        self.state, self.ctl = state, ctl
        self.site = w.Dropdown(options=list(SITES), value=state.layer_site, description="Patch")
        self.site.observe(lambda change: ctl.set_layer_site(change["new"]), names="value")
        self.go = w.Button(description="Look inside", icon="search", button_style="primary")
        self.go.on_click(lambda _: ctl.look_inside())
        self.info = w.HTML()
        self.summary = w.HTML()
        self.carried = chart_box("")
        self.lens = chart_box("")
        self.kl = chart_box("")
        self.patches = chart_box("")
        self.weights = chart_box("")
        self.spectra = chart_box("")
        self.added = DiffPanel(state, ctl)
        state.observe(self.redraw, names=["inside", "chosen", "weights", "running"])
        super().__init__([w.HTML(f"<div class='fx-note'>{INTRO}</div>"), w.HBox([self.go, self.site]),
                          self.info, self.summary, self.carried, self.lens, self.kl, self.patches,
                          self.weights, self.spectra, self.added])  # fmt: skip
        self.add_class("fx-layers")
        self.redraw()

    def redraw(self, _=None) -> None:
        s = self.state
        self.go.disabled = s.chosen is None or not s.weights or bool(s.running)
        self.info.value = self.prompt_line()
        found = s.inside
        if found is None:
            self.summary.value = ""
            for box in (self.carried, self.lens, self.kl, self.patches, self.weights, self.spectra):
                show_chart(box, None, "")
            return
        self.summary.value = summary_html(found)
        whole = found.layer_frame()
        show_chart(self.carried, layer_charts.carried_lines(whole, found.site) if len(whole) else None, "")
        show_chart(self.lens, layer_charts.lens_heatmaps(found.lens), "")
        show_chart(self.kl, layer_charts.kl_lines(found.lens), "")
        effects = found.patch_frame()
        show_chart(self.patches, layer_charts.patch_heatmaps(effects, found.site) if len(effects) else None, "")
        weights, spectra = found.weights, found.spectra
        show_chart(self.weights, layer_charts.weight_heatmap(weights) if weights is not None else None, "")
        show_chart(self.spectra, layer_charts.spectra_heatmap(spectra) if spectra is not None and len(spectra) else None, "")

    def prompt_line(self) -> str:
        s = self.state
        if not s.weights:
            return f"<em>The layer-wise tools need the models' weights; this family is served by {escape(s.server)}.</em>"
        if s.chosen is None:
            return "<em>Pick a response in the Responses tab, then Look inside: every model is read at it.</em>"
        model, sample = s.chosen
        if s.inside is None:
            return f"<em>Chosen: sample {sample} of {escape(model)}. Look inside to read every model at it.</em>"
        return f"<div class='fx-note'>Response «{escape(s.inside.response.strip())}» to «{escape(s.inside.prompt)}»</div>"


def summary_html(found) -> str:
    """One line per donor (where its change enters, the preview's agreement, whether its head
    differs), one per descendant's lens (where it parts from the base's), then what was left
    out."""
    rows = [f"<li>{escape(donor_line(p))}</li>" for p in found.patches.values()]
    rows += [f"<li>{escape(line)}</li>" for line in parting(found.lens)]
    notes = [f"<li class='fx-note'>{escape(n)}</li>" for n in found.notes]
    return f"<ul>{''.join(rows + notes)}</ul>" if rows or notes else ""


def donor_line(p) -> str:
    r = p.meta["preview"]["pearson"]
    line = p.summary + (f"; the attribution-patching preview agrees at r = {r:.2f}" if r == r else "")
    if not p.meta["shared_head"]:
        line += f" ({p.meta['donor']}'s head differs from the base's: no block can carry all of its change)"
    return line
