"""The Findings tab: what each adaptation changed, first. A behaviour × descendant matrix of
buttons coloured by label (hover: both rates with intervals; click: the responses behind it),
the decided findings as sentences, and an empty state that says what to do first."""

from __future__ import annotations

import ipywidgets as w

from explorer.app.controller import Controller
from explorer.app.deciding import DecideBar
from explorer.app.state import AppState
from explorer.app.widgets import escape
from explorer.charts import LABEL_STYLE

# label -> (background, text): readable on light and dark pages alike
COLOURS = {name: (LABEL_STYLE[name], "#ffffff") for name in ("introduced", "amplified", "suppressed", "inherited")}
COLOURS |= {"absent": (LABEL_STYLE["absent"], "#111827"), "inconclusive": ("#fef3c7", "#78350f")}
MEANINGS = {
    "introduced": "new: the base (almost) never does it", "amplified": "more often than the base",
    "suppressed": "less often than the base", "inherited": "as often as the base (within ±25 points)",
    "absent": "neither does it", "inconclusive": "not decided yet: more samples",
}  # fmt: skip
CELL_WIDTH = "150px"


def percent(value: float) -> str:
    return f"{value:.0%}"


class FindingsView(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state, self.ctl = state, ctl
        self.intro = w.HTML()
        self.matrix = w.GridBox(layout=w.Layout(grid_gap="4px", overflow="auto", max_width="100%"))
        self.sentences = w.HTML()
        self.legend = w.HTML(legend_html())
        self.behind = FocusBox(state)
        self.examples = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        state.observe(self.redraw, names=["findings", "samples", "examples"])
        self.decide = DecideBar(state, ctl)
        super().__init__([self.intro, self.examples, self.decide, self.matrix, self.legend, self.sentences, self.behind])
        self.add_class("fx-findings")
        self.redraw()

    def redraw(self, _=None) -> None:
        s = self.state
        table = s.findings
        if s.samples is None or table is None:
            self.intro.value = ("<div class='fx-empty'><b>Start here.</b> Pick a prompt (or one of the family's examples "
                                "below), then press <b>Resample</b>: every model answers it many times, and this tab "
                                "sums up which behaviours each descendant inherited from the base and which its "
                                "adaptation introduced, amplified or suppressed.</div>")  # fmt: skip
            self.examples.children = [self._example(p) for p in s.examples[:6]]
            self.matrix.children, self.sentences.value = [], ""
            self.legend.layout.display = "none"
            return
        self.examples.children = []
        self.legend.layout.display = ""
        n_labels = len(table)
        self.intro.value = (f"<div class='fx-note'>{n_labels} labels from {len(s.samples.df)} samples. They hold "
                            f"<b>together</b>: the chance that any of them is wrong is at most 5% (intervals widened "
                            f"for the number of comparisons). Hover a cell for both rates; click it for the "
                            f"responses behind it.</div>")  # fmt: skip
        self.matrix.children = self._cells(table)
        descendants = list(dict.fromkeys(table["model"]))
        self.matrix.layout.grid_template_columns = f"minmax(120px, 220px) repeat({len(descendants)}, {CELL_WIDTH})"
        self.sentences.value = sentences_html(table)

    def _example(self, prompt: str) -> w.Button:
        button = w.Button(description=prompt[:40], tooltip=prompt, layout=w.Layout(width="auto", margin="2px"))
        button.on_click(lambda _: self.ctl.assign(prompt=prompt))
        return button

    def _cells(self, table) -> list[w.Widget]:
        descendants = list(dict.fromkeys(table["model"]))
        behaviours = list(dict.fromkeys(table.sort_values("behaviour", kind="stable")["behaviour"]))
        cells: list[w.Widget] = [w.HTML("<b>behaviour</b>")]
        cells += [w.HTML(f"<b>{escape(m)}</b>") for m in descendants]
        index = table.set_index(["behaviour", "model"])
        for behaviour in behaviours:
            cells.append(w.HTML(f"<span class='fx-behaviour'>{escape(behaviour)}</span>"))
            for model in descendants:
                judged = (behaviour, model) in index.index
                cells.append(self._cell(index.loc[(behaviour, model)], behaviour, model) if judged else not_judged())
        return cells

    def _cell(self, row, behaviour: str, model: str) -> w.Button:
        background, text = COLOURS.get(row["label"], ("#e5e7eb", "#111827"))
        button = w.Button(description=f"{row['label']} {percent(row['freq'])} · {percent(row['base_freq'])}",
                          tooltip=row["sentence"], layout=w.Layout(width=CELL_WIDTH))  # fmt: skip
        button.style.button_color, button.style.text_color = background, text
        button.add_class("fx-cell")
        button.on_click(lambda _: self.ctl.focus(behaviour, model))
        return button


def not_judged() -> w.HTML:
    """A cell with no label: a discovered word is judged only in the descendants that proposed it."""
    return w.HTML("<span class='fx-note' title='not judged here: a discovered word is labelled only in the "
                  "descendants whose adaptation proposed it'>–</span>", layout=w.Layout(width=CELL_WIDTH))


def legend_html() -> str:
    chips = "".join(
        f"<span class='fx-chip' style='background:{bg};color:{fg}'>{name}</span> "
        f"<span class='fx-note'>{escape(MEANINGS[name])}</span>&nbsp;&nbsp; "
        for name, (bg, fg) in COLOURS.items()
    )
    return f"<div class='fx-legend'>{chips}<span class='fx-note'>Cells: descendant · base.</span></div>"


def sentences_html(table) -> str:
    decided = table[table["label"].isin(["introduced", "amplified", "suppressed", "inherited"])]
    if decided.empty:
        return "<div class='fx-note'>No finding is decided yet: resample with more samples (n), or add behaviours in the Variability tab.</div>"
    items = "".join(f"<li>{escape(text)}</li>" for text in decided["sentence"])
    return f"<b>Findings</b><ul class='fx-findings-list'>{items}</ul>"


class FocusBox(w.HTML):
    """The responses behind the finding (or cluster) last clicked, descendant beside base."""

    def __init__(self, state: AppState) -> None:
        super().__init__()
        self.state = state
        state.observe(self.redraw, names=["focus_responses"])
        self.redraw()

    def redraw(self, _=None) -> None:
        s = self.state
        shown = s.focus_responses
        if shown is None or s.focus is None:
            self.value = ""
            return
        behaviour, model = s.focus
        columns = []
        for label in dict.fromkeys([model, s.samples.models[0]]):  # the descendant, then the base
            texts = shown[shown["model"] == label]["text"]
            total = int((s.samples.df["model"] == label).sum())
            items = "".join(f"<li>{escape(t) or '<em>(empty)</em>'}</li>" for t in texts)
            columns.append(f"<div class='fx-focus-col'><b>{escape(label)}</b> — {len(texts)} of {total}<ol>{items}</ol></div>")
        self.value = (f"<div class='fx-focus'><b>Responses showing “{escape(behaviour)}”</b>"
                      f"<div class='fx-focus-cols'>{''.join(columns)}</div></div>")  # fmt: skip
