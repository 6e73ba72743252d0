"""The Layers tab's panel for what each adaptation adds: activation differences read as tokens,
and the base steered by one of them, labelled against the base.

Lays out `state.diffs`, `state.steered_table` and the steering settings; computing is the
controller's (Read differences, Steer).
"""

from __future__ import annotations

import ipywidgets as w

from explorer import charts, layer_charts
from explorer.app.state import AppState
from explorer.app.widgets import chart_box, escape, show_chart

ABOUT = (
    "<b>What did each adaptation add?</b> The mean difference of the residual stream, descendant "
    "minus base, over the first tokens of neutral text and your prompt, read through the "
    "descendant's own head (Minder et al. 2025). <b>Steer</b> adds one difference to the base "
    "while it samples your prompt and labels the steered base against the base: <em>introduced</em> "
    "says the difference alone brings the behaviour."
)


class DiffPanel(w.VBox):
    def __init__(self, state: AppState, ctl) -> None:
        self.state, self.ctl = state, ctl
        self.read = w.Button(description="Read differences", icon="book", button_style="primary")
        self.read.on_click(lambda _: ctl.read_differences())
        self.layer = w.Dropdown(description="Block", options=[0], value=0, layout=w.Layout(width="150px"))
        self.layer.observe(lambda c: self._set(diff_layer=c["new"]), names="value")
        self.summary = w.HTML()
        self.tokens = chart_box("")
        self.model = w.Dropdown(description="Steer with", layout=w.Layout(width="260px"))
        self.model.observe(lambda c: self._set(steer_model=c["new"] or ""), names="value")
        self.scale = w.BoundedFloatText(value=state.steer_scale, min=-100, max=100, step=1, description="× scale",
                                        layout=w.Layout(width="150px"))  # fmt: skip
        self.scale.observe(lambda c: self._set(steer_scale=float(c["new"])), names="value")
        self.n = w.BoundedIntText(value=state.steer_n, min=1, max=4096, description="n", layout=w.Layout(width="130px"))
        self.n.observe(lambda c: self._set(steer_n=int(c["new"])), names="value")
        self.behaviour = w.Text(value=state.steer_behaviour, placeholder=r"regex, e.g. \bahoy\b (empty: the run's behaviours)",
                                description="Measure", layout=w.Layout(width="330px"))  # fmt: skip
        self.behaviour.observe(lambda c: self._set(steer_behaviour=c["new"]), names="value")
        self.go = w.Button(description="Steer", icon="compass")
        self.go.on_click(lambda _: ctl.steer())
        self.result = w.HTML()
        self.rates = chart_box("")
        self._drawing = False
        state.observe(self.redraw, names=["diffs", "diff_layer", "steered_table", "running", "weights", "family"])
        super().__init__([w.HTML(f"<div class='fx-note'>{ABOUT}</div>"), w.HBox([self.read, self.layer]), self.summary,
                          self.tokens, w.HBox([self.model, self.scale, self.n]), w.HBox([self.behaviour, self.go]),
                          self.result, self.rates])  # fmt: skip
        self.add_class("fx-steer")
        self.redraw()

    def _set(self, **values) -> None:
        if not self._drawing:
            self.ctl.set_steering(**values)

    def redraw(self, _=None) -> None:
        s, diffs = self.state, self.state.diffs
        self.read.disabled = s.family is None or not s.weights or bool(s.running)
        self.go.disabled = diffs is None or not diffs.models or bool(s.running)
        self._drawing = True
        try:
            with self.layer.hold_sync(), self.model.hold_sync():
                self.layer.options = list(range(len(diffs.base_norm))) if diffs is not None else [0]
                self.layer.value = s.diff_layer if diffs is not None else 0
                self.model.options = diffs.models if diffs is not None else []
                self.model.value = s.steer_model if diffs is not None and s.steer_model in diffs.models else None
        finally:
            self._drawing = False
        self.summary.value = reading_html(diffs, s.diff_layer) if diffs is not None else ""
        show_chart(self.tokens, layer_charts.diff_tokens(diffs.tokens, s.diff_layer) if diffs is not None and len(diffs.tokens) else None, "")
        table = s.steered_table
        self.result.value = steering_html(s.steered, table) if table is not None else ""
        show_chart(self.rates, charts.behaviour_chart(table) if table is not None and len(table) else None, "")


def reading_html(diffs, layer: int) -> str:
    """One line per descendant: what its difference at `layer` raises and lowers."""
    rows = []
    for model in diffs.models:
        read = diffs.reading(model, layer)
        if read["raised"]:
            rows.append(f"<li><b>{escape(model)}</b> raises {escape(', '.join(read['raised']))}; "
                        f"lowers {escape(', '.join(read['lowered']))}</li>")  # fmt: skip
        else:
            rows.append(f"<li><b>{escape(model)}</b> leaves block {layer} as the base's on this text</li>")
    notes = [f"<li class='fx-note'>{escape(n)}</li>" for n in diffs.notes]
    return f"<ul>{''.join(rows + notes)}</ul>"


def steering_html(samples, table) -> str:
    """One sentence per behaviour: the steered base's rate and label against the base's."""
    meta = samples.meta.get("steering", {})
    rows = []
    for behaviour, part in table.groupby("behaviour", sort=False):
        base, steered = part.iloc[0], part[part["model"] == meta.get("label")]
        if steered.empty:
            continue
        st = steered.iloc[0]
        rows.append(f"<li>{escape(behaviour)}: steered {st['freq']:.0%} [{st['lo']:.0%}–{st['hi']:.0%}] "
                    f"against the base's {base['freq']:.0%} [{base['lo']:.0%}–{base['hi']:.0%}] — "
                    f"<b>{escape(st['label'])}</b></li>")  # fmt: skip
    head = (f"{escape(samples.models[0])} + {meta.get('scale', 0):g} × {escape(meta.get('model'))}'s difference "
            f"at block {meta.get('layer')}, {len(samples.texts(samples.models[0]))} samples each:")  # fmt: skip
    return f"<div class='fx-note'>{head}</div><ul>{''.join(rows)}</ul>"
