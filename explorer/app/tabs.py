"""The tabs: thin ipywidgets views that lay out what the state holds (every table they draw
is computed by the controller) and call the controller on clicks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import ipywidgets as w

from explorer import charts
from explorer.app.controller import Controller
from explorer.app.findings_view import FocusBox
from explorer.app.panels import RELATION_NAMES
from explorer.app.state import AppState
from explorer.app.trust_view import AgreementBox, FaithfulnessBox
from explorer.app.widgets import chart_box, download_link, escape, show_chart, table_html
from explorer.core.findings import needed_as_text

CHIPS = 5  # answer clusters shown as chips above each model's responses
# Vega-Lite's default category colours, in the clusters chart's order (cluster rank)
TABLEAU10 = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"]


class ResponsesView(w.VBox):
    """One column per model: its answer clusters as chips (click: the responses behind one),
    then its samples, each once; picking one selects it for attribution. Below: the
    responses behind a clicked chip, and the chosen response token by token."""

    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state, self.ctl = state, ctl
        self.columns = w.HBox(layout=w.Layout(overflow="auto", width="100%"))
        self.colour = w.ToggleButtons(options=[("log-ratio vs base", "log_ratio"), ("probability", "prob")],
                                      value="log_ratio", description="Colour by")  # fmt: skip
        self.tokens = chart_box("pick a response above to see it token by token")
        self.token_note = w.HTML()
        self.colour.observe(lambda _: self.draw_tokens(), names="value")
        state.observe(self.redraw, names=["samples", "clusters"])
        state.observe(lambda _: self.draw_tokens(), names=["chosen_tokens"])
        self.behind = FocusBox(state)
        super().__init__([w.HTML("<div class='fx-note'>Each column is one model; pick a response to attribute it in every model, or click an answer cluster to see its responses.</div>"),
                          self.columns, self.behind, self.colour, self.token_note, self.tokens])  # fmt: skip
        self.redraw()

    _redrawing = False

    def redraw(self, _=None) -> None:
        s = self.state
        if s.samples is None:
            self.columns.children = [w.HTML("<em>Resample to see responses.</em>")]
            return
        self._redrawing = True
        try:
            self.columns.children = [self._column(model) for model in s.samples.models]
        finally:
            self._redrawing = False

    def _column(self, model: str) -> w.VBox:
        """A model's samples, each once (its text), and its answer clusters as coloured chips
        that show the responses behind them."""
        s = self.state
        rows = s.samples.df[s.samples.df["model"] == model]
        options = [(f"{sample:>3}. {text or '(empty)'}", int(sample)) for sample, text in zip(rows["sample"], rows["text"], strict=True)]
        select = w.Select(options=options, value=None, rows=min(len(options), 16), layout=w.Layout(width="250px"))
        select.add_class("fx-responses")
        select.observe(lambda change, m=model: self.on_pick(m, change), names="value")
        relation = RELATION_NAMES.get(s.relations.get(model, ""), "")
        head = w.HTML(f"<div class='fx-model'>{escape(model)}</div><div class='fx-relation'>{escape(relation)} · {len(rows)} samples</div>")
        return w.VBox([head, self._chips(model, rows), select], layout=w.Layout(margin="0 8px 0 0", min_width="250px"))

    def _chips(self, model: str, rows) -> w.Box:
        s = self.state
        if s.clusters is None:
            return w.Box()
        ranks = {} if s.cluster_counts is None else dict(zip(s.cluster_counts["cluster"], s.cluster_counts["cluster_rank"], strict=False))
        counts = s.clusters.loc[rows.index].value_counts()
        chips = []
        for cluster, count in counts.head(CHIPS).items():
            colour = TABLEAU10[int(ranks.get(cluster, 9)) % len(TABLEAU10)]
            chip = w.Button(description=f"{str(cluster)[:18]} ×{count}", tooltip=f"show the {count} responses of {model} in the answer cluster “{cluster}”",
                            layout=w.Layout(width="auto", height="24px", padding="0 6px"))  # fmt: skip
            chip.style.button_color, chip.style.text_color = colour, "#ffffff"
            chip.on_click(lambda _, c=cluster, m=model: self.ctl.focus(f"≈ {c}", m))
            chips.append(chip)
        box = w.Box(chips)
        box.add_class("fx-clusters")
        return box

    def on_pick(self, model: str, change) -> None:
        if not self._redrawing and change["new"] is not None:
            self.ctl.choose(model, change["new"])

    def draw_tokens(self) -> None:
        tables = self.state.chosen_tokens
        if tables is None:
            show_chart(self.tokens, None, "pick a response above to see it token by token")
            return
        ratio = tables["log_ratio"]
        want_ratio = self.colour.value == "log_ratio"
        self.token_note.value = (
            "<div class='fx-note'>Log-ratios against the base are unavailable: these models "
            "tokenize differently, so their tokens do not line up. Showing probabilities.</div>"
            if want_ratio and ratio is None
            else ""
        )
        if want_ratio and ratio is not None:
            chart = charts.token_ratio_chart(ratio) if len(ratio) else None
        else:
            chart = charts.token_prob_chart(tables["prob"]) if len(tables["prob"]) else None
        show_chart(self.tokens, chart, "an empty response has no tokens")


def folded(child: w.Widget, title: str) -> w.Accordion:
    """A detailed table, closed until asked for."""
    return w.Accordion(children=[child], titles=(title,), selected_index=None)


class VariabilityView(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state, self.ctl = state, ctl
        self.metrics = w.HTML()
        self.clusters = chart_box()
        self.behaviour = chart_box()
        self.prov_table = w.HTML()
        self.first = chart_box()
        self.entropy = chart_box()
        self.lengths = chart_box()
        self.cross = chart_box()
        self.name = w.Text(placeholder="name", layout=w.Layout(width="140px"))
        self.regex = w.Text(placeholder=r"regex, e.g. \bsunny\b", layout=w.Layout(width="220px"))
        self.add = w.Button(description="Add behaviour", icon="plus")
        self.clear = w.Button(description="Use answer clusters")
        self.add.on_click(self.on_add)
        self.clear.on_click(lambda _: ctl.clear_behaviours())
        state.observe(self.redraw, names=["variability", "provenance", "cross", "cluster_counts",
                                          "first_tokens", "entropy"])  # fmt: skip
        super().__init__([
            w.HTML("<b>Spread within each model</b>"), folded(self.metrics, "Spread metrics per model (table)"), self.clusters,
            w.HTML("<b>Provenance: where does a behaviour come from?</b> <span class='fx-note'>Rates with 95% intervals; the labels hold together at 95% over all of them (see the Findings tab); small samples say <i>inconclusive</i>, with the samples per model that would decide it.</span>"),
            w.HBox([self.name, self.regex, self.add, self.clear]), self.behaviour,
            folded(self.prov_table, "Provenance per behaviour and model (table)"),
            self.first, self.entropy, self.lengths, self.cross,
        ])  # fmt: skip
        self.redraw()

    def on_add(self, _=None) -> None:
        if self.ctl.add_behaviour(self.name.value, self.regex.value):
            self.name.value, self.regex.value = "", ""

    def redraw(self, _=None) -> None:
        s = self.state
        if s.samples is None or s.variability is None:
            self.metrics.value = "<em>Resample to measure variability.</em>"
            for box in (
                self.clusters,
                self.behaviour,
                self.first,
                self.entropy,
                self.lengths,
                self.cross,
            ):
                show_chart(box, None, "")
            self.prov_table.value = ""
            return
        cols = ["model", "n", "unique_share", "n_clusters", "modal_cluster_share", "cluster_entropy", "distinct_1",
                "distinct_2", "length_mean", "length_capped_share", "mean_token_entropy", "first_token_entropy"]  # fmt: skip
        self.metrics.value = table_html(
            s.variability[[c for c in cols if c in s.variability.columns]]
        )
        show_chart(self.clusters, charts.clusters_chart(s.cluster_counts))
        if s.provenance is not None and len(s.provenance):
            show_chart(self.behaviour, charts.behaviour_chart(s.provenance))
            shown = needed_as_text(s.provenance[["behaviour", "model", "count", "n", "freq", "lo", "hi", "n_needed", "label"]])
            self.prov_table.value = table_html(shown, max_rows=40)
        show_chart(self.first, charts.first_token_chart(s.first_tokens))
        show_chart(self.entropy, charts.entropy_chart(s.entropy))
        show_chart(self.lengths, charts.length_chart(s.samples.df))
        show_chart(
            self.cross, charts.cross_score_chart(s.cross) if s.cross is not None else None, ""
        )


LINK_LABELS = {"report.html": "Report (HTML)"}
UNITS = [("auto (words where tokens split them)", "auto"), ("words", "words"), ("tokens", "tokens")]


class AttributionView(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state, self.ctl = state, ctl
        self.method = w.Dropdown(options=self.method_options(), value=state.method, description="Method")
        self.method.observe(self.pick, names="value")
        self.units = w.Dropdown(options=UNITS, value=state.units, description="Units")
        self.units.observe(lambda change: ctl.set_units(change["new"]), names="value")
        state.observe(self.sync_methods, names=["weights", "method", "methods"])
        self.info = w.HTML()
        self.heatmaps = chart_box("pick a response in the Responses tab")
        self.diff = chart_box("")
        self.bars = chart_box("")
        self.faithful, self.agreement = FaithfulnessBox(state, ctl), AgreementBox(state)
        state.observe(self.redraw, names=["attribution", "attribution_diff", "attribution_spread"])
        super().__init__([w.HBox([self.method, self.units]), self.faithful, self.info, self.heatmaps, self.diff,
                          self.bars, self.agreement])  # fmt: skip
        self.redraw()

    def method_options(self) -> list[tuple[str, str]]:
        """(label, method): for a served family, methods that need weights say so."""
        served = not self.state.weights
        return [(f"{m} — needs local weights" if served and needs else m, m) for m, needs in self.state.methods]

    def pick(self, change) -> None:
        if self._syncing:
            return
        self.ctl.set_method(change["new"])
        if self.method.value != self.state.method:  # refused: show the method in use again
            self.sync_methods()

    _syncing = False

    def sync_methods(self, _=None) -> None:
        self._syncing = True
        try:
            with self.method.hold_sync():
                self.method.options = self.method_options()
                self.method.value = self.state.method
        finally:
            self._syncing = False

    def redraw(self, _=None) -> None:
        s = self.state
        attr = s.attribution
        if attr is None:
            self.info.value = "<em>Pick a response in the Responses tab: it is attributed in every model, side by side.</em>"
            show_chart(self.heatmaps, None, "")
        else:
            self.info.value = f"<div class='fx-note'>{escape(s.attribution_note)}</div>"
            show_chart(self.heatmaps, charts.attribution_heatmaps(attr.df, title="Attribution per model: response tokens (rows) × source tokens, one colour scale"))
        diff = s.attribution_diff
        title = f"Minus {attr.models[0]}: the change each adaptation made, same rows and columns" if attr is not None else ""
        show_chart(self.diff, charts.attribution_heatmaps(diff, title=title) if diff is not None else None, "")
        spread = s.attribution_spread
        show_chart(self.bars, charts.attribution_bars(spread) if spread is not None and len(spread) else None, "")


class DataView(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state, self.ctl = state, ctl
        self.table = w.HTML()
        self.links = w.HTML()
        self.prepare = w.Button(description="Prepare downloads", icon="save")
        self.upload = w.FileUpload(accept=".json", multiple=False, description="Import session")
        self.sweep_dir = w.Text(placeholder="sweep folder (from family-explorer sweep)", layout=w.Layout(width="320px"))
        self.open_sweep = w.Button(description="Open sweep", icon="folder-open")
        self.sweep_view = w.HTML()
        self.prepare.on_click(self.on_prepare)
        self.upload.observe(self.on_upload, names="value")
        self.open_sweep.on_click(lambda _: ctl.open_sweep(self.sweep_dir.value))
        state.observe(self.redraw, names=["samples"])
        state.observe(self.redraw_links, names=["downloads"])
        state.observe(self.redraw_sweep, names=["sweep_summary"])
        super().__init__([w.HBox([self.prepare, self.upload]), w.HBox([self.sweep_dir, self.open_sweep]),
                          self.links, self.sweep_view, self.table])  # fmt: skip

    def redraw_sweep(self, _=None) -> None:
        sweep = self.state.sweep
        if sweep is None:
            self.sweep_view.value = ""
            return
        cols = ["prompt_index", "model", "n", "unique_share", "n_clusters", "modal_cluster_share"]
        variability = sweep["variability"][[c for c in cols if c in sweep["variability"].columns]]
        self.sweep_view.value = "".join([
            "<b>Sweep: provenance labels across the prompt set</b>", table_html(self.state.sweep_summary),
            "<b>Sweep: variability per prompt and model</b>", table_html(variability, max_rows=100),
        ])  # fmt: skip

    def redraw(self, _=None) -> None:
        s = self.state
        if s.samples is None:
            self.table.value = "<em>No samples yet.</em>"
            return
        cols = ["model", "sample", "seed", "text", "n_tokens", "finish_reason"]
        self.table.value = table_html(s.samples.df[cols], max_rows=200, css="fx-data")

    def redraw_links(self, _=None) -> None:
        self.links.value = " ".join(download_link(f.data, f.filename, LINK_LABELS.get(f.filename, f.filename), f.mime) for f in self.state.downloads)

    def on_prepare(self, _=None) -> None:
        s = self.state
        if s.cluster_counts is None:
            self.ctl.fail("Nothing to export yet: resample first.")
            return
        self.ctl.prepare_downloads({"clusters": charts.clusters_chart(s.cluster_counts).to_dict()})

    def on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(item["name"]).name
            path.write_bytes(bytes(item["content"]))
            self.ctl.import_session(path)
