"""Thin ipywidgets views: each observes the state and calls the controller. No computation here
beyond turning state into widgets, and no torch import."""

from __future__ import annotations

import tempfile
from pathlib import Path

import ipywidgets as w

from explorer import charts
from explorer.app.controller import Controller
from explorer.app.state import AppState
from explorer.app.widgets import STYLE, chart_box, download_link, escape, show_chart, table_html

RELATION_NAMES = {"finetune": "fine-tune", "instruct": "instruction tune", "distillation": "distilled",
                  "adapter": "LoRA adapter", "base": "base", "sibling": "sibling"}  # fmt: skip


def section(title: str, *children: w.Widget, width: str = "auto") -> w.VBox:
    return w.VBox([w.HTML(f"<b>{escape(title)}</b>"), *children],
                  layout=w.Layout(border="1px solid #e5e7eb", padding="6px 10px", margin="0 8px 8px 0", width=width))  # fmt: skip


class Banner(w.HTML):
    def __init__(self, state: AppState) -> None:
        super().__init__()
        self.state = state
        state.observe(self.redraw, names=["error", "status", "running"])
        self.redraw()

    def redraw(self, _=None) -> None:
        s = self.state
        if s.error:
            self.value = f"<div class='fx-error' role='alert'>{escape(s.error)}</div>"
        elif s.status:
            self.value = f"<div class='fx-status'>{escape(s.status)}</div>"
        else:
            self.value = ""


class FamilyPanel(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        from explorer.core.family import list_presets

        self.state, self.ctl = state, ctl
        self.preset = w.Dropdown(options=list_presets(), value=state.preset, description="Preset")
        self.base = w.Text(
            placeholder="or hub id, folder, http://…/v1",
            description="Base",
        )
        self.extra = w.Text(placeholder="comma-separated ids or folders", description="Add")
        self.members = w.SelectMultiple(
            description="Compare", rows=5, layout=w.Layout(width="330px")
        )
        self.load = w.Button(description="Load", icon="download", button_style="primary")
        self.progress = w.FloatProgress(
            min=0, max=1, layout=w.Layout(width="140px", visibility="hidden")
        )
        self.load.on_click(self.on_load)
        self.members.observe(self.on_members, names="value")
        state.observe(
            self.redraw, names=["available", "selected", "relations", "running", "progress"]
        )
        super().__init__(
            [
                section(
                    "Family",
                    self.preset,
                    self.base,
                    self.extra,
                    w.HBox([self.load, self.progress]),
                    self.members,
                )
            ]
        )
        self.redraw()

    def on_load(self, _=None) -> None:
        extra = [x.strip() for x in self.extra.value.split(",") if x.strip()]
        spec = self.base.value.strip() or self.preset.value
        self.state.preset = self.preset.value
        self.ctl.load_family(spec, descendants=extra or None)

    def on_members(self, change) -> None:
        if not self._redrawing:
            self.ctl.assign(selected=list(change["new"]))

    _redrawing = False

    def redraw(self, _=None) -> None:
        s = self.state
        self._redrawing = True
        try:  # options and selection in one message: a stale index on new options breaks the page
            with self.members.hold_sync():
                self.members.options = [
                    (
                        f"{d} — {RELATION_NAMES.get(s.relations.get(d, ''), s.relations.get(d, ''))}",
                        d,
                    )
                    for d in s.available
                ]
                self.members.value = tuple(d for d in s.selected if d in s.available)
        finally:
            self._redrawing = False
        loading = s.running == "Loading"
        self.load.disabled = loading
        self.progress.layout.visibility = "visible" if loading else "hidden"
        self.progress.value = s.progress.get("loading", 0.0)


class PromptPanel(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state, self.ctl = state, ctl
        self.text = w.Textarea(
            value=state.prompt, placeholder="Type a prompt", rows=3, layout=w.Layout(width="360px")
        )
        self.examples = w.Dropdown(
            options=["(examples)"], description="Examples", layout=w.Layout(width="360px")
        )
        self.chat = w.ToggleButtons(options=["auto", "never", "always"], value=state.chat, description="Chat template",
                                    style={"button_width": "64px"})  # fmt: skip
        self.inputs = w.HTML()
        w.link((state, "prompt"), (self.text, "value"))
        w.link((state, "chat"), (self.chat, "value"))
        self.examples.observe(self.on_example, names="value")
        state.observe(self.redraw, names=["examples", "samples"])
        super().__init__([section("Prompt", self.text, self.examples, self.chat, self.inputs)])
        self.redraw()

    def on_example(self, change) -> None:
        if change["new"] and change["new"] != "(examples)":
            self.state.prompt = change["new"]

    def redraw(self, _=None) -> None:
        s = self.state
        self.examples.options = ["(examples)", *s.examples]
        inputs = s.samples.meta.get("model_inputs", {}) if s.samples is not None else {}
        distinct = set(inputs.values())
        if inputs and (len(distinct) > 1 or s.prompt not in distinct):
            lines = "".join(
                f"<div class='fx-input'><b>{escape(m)}</b>: {escape(t)}</div>"
                for m, t in inputs.items()
            )
            self.inputs.value = f"<div class='fx-note'>What each model received:</div>{lines}"
        else:
            self.inputs.value = ""


class SamplingPanel(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state, self.ctl = state, ctl
        style = {"description_width": "110px"}
        lay = w.Layout(width="230px")
        self.n = w.BoundedIntText(min=1, max=4096, description="samples n", style=style, layout=lay)
        self.temperature = w.BoundedFloatText(
            min=0.01, max=10, step=0.1, description="temperature", style=style, layout=lay
        )
        self.top_p = w.BoundedFloatText(
            min=0.01, max=1, step=0.05, description="top-p", style=style, layout=lay
        )
        self.top_k = w.BoundedIntText(
            min=0, max=100000, description="top-k (0 off)", style=style, layout=lay
        )
        self.max_new = w.BoundedIntText(
            min=1, max=4096, description="max new tokens", style=style, layout=lay
        )
        self.seed = w.IntText(description="seed", style=style, layout=lay)
        self.fresh = w.Checkbox(description="fresh seed each time", indent=False)
        for widget, name in [(self.n, "n"), (self.temperature, "temperature"), (self.top_p, "top_p"), (self.top_k, "top_k"),
                             (self.max_new, "max_new_tokens"), (self.seed, "seed"), (self.fresh, "fresh_seed")]:  # fmt: skip
            w.link((state, name), (widget, "value"))  # the state's value wins at start
        self.resample = w.Button(description="Resample", icon="refresh", button_style="success")
        self.stop = w.Button(description="Stop", icon="stop", button_style="danger", disabled=True)
        self.resample.on_click(lambda _: ctl.resample())
        self.stop.on_click(lambda _: ctl.stop())
        self.bars = w.VBox()
        self._bars: dict[str, w.FloatProgress] = {}
        state.observe(self.redraw, names=["running", "progress", "selected", "family"])
        super().__init__([section("Sampling", self.n, self.temperature, self.top_p, self.top_k, self.max_new, self.seed,
                                  self.fresh, w.HBox([self.resample, self.stop]), self.bars)])  # fmt: skip
        self.redraw()

    def redraw(self, _=None) -> None:
        s = self.state
        self.resample.disabled = bool(s.running) or s.family is None
        self.stop.disabled = not s.running
        if s.running != "Sampling":
            self.bars.children, self._bars = [], {}
            return
        for model, frac in s.progress.items():
            if model not in self._bars:
                self._bars[model] = w.FloatProgress(min=0, max=1, description=model, style={"description_width": "120px"},
                                                    layout=w.Layout(width="300px"))  # fmt: skip
                self.bars.children = list(self._bars.values())
            self._bars[model].value = frac


class ResponsesView(w.VBox):
    """One column per model, its samples listed with cluster labels; picking one selects it for
    attribution. Below: the chosen response token by token."""

    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state, self.ctl = state, ctl
        self.columns = w.HBox(layout=w.Layout(overflow="auto", width="100%"))
        self.colour = w.ToggleButtons(options=[("log-ratio vs base", "log_ratio"), ("probability", "prob")],
                                      value="log_ratio", description="Colour by")  # fmt: skip
        self.tokens = chart_box("pick a response above to see it token by token")
        self.token_note = w.HTML()
        self.colour.observe(lambda _: self.draw_tokens(), names="value")
        state.observe(self.redraw, names=["samples", "clusters"])
        state.observe(lambda _: self.draw_tokens(), names=["chosen", "log_ratio"])
        super().__init__([w.HTML("<div class='fx-note'>Each column is one model; pick a response to attribute it in every model.</div>"),
                          self.columns, self.colour, self.token_note, self.tokens])  # fmt: skip
        self.redraw()

    _redrawing = False

    def redraw(self, _=None) -> None:
        s = self.state
        if s.samples is None:
            self.columns.children = [w.HTML("<em>Resample to see responses.</em>")]
            return
        cols = []
        self._redrawing = True
        try:
            for model in s.samples.models:
                rows = s.samples.df[s.samples.df["model"] == model]
                clusters = s.clusters.loc[rows.index] if s.clusters is not None else None
                options = []
                for idx, (sample, text) in enumerate(
                    zip(rows["sample"], rows["text"], strict=True)
                ):
                    tag = f"  [{clusters.iloc[idx]}]" if clusters is not None else ""
                    options.append((f"{sample:>3}. {text or '(empty)'}{tag}", int(sample)))
                select = w.Select(
                    options=options,
                    value=None,
                    rows=min(len(options), 14),
                    layout=w.Layout(width="250px"),
                )
                select.add_class("fx-responses")
                select.observe(lambda change, m=model: self.on_pick(m, change), names="value")
                relation = RELATION_NAMES.get(s.relations.get(model, ""), "")
                head = w.HTML(
                    f"<div class='fx-model'>{escape(model)}</div><div class='fx-relation'>{escape(relation)} · {len(rows)} samples</div>"
                )
                cols.append(
                    w.VBox([head, select], layout=w.Layout(margin="0 8px 0 0", min_width="250px"))
                )
        finally:
            self._redrawing = False
        self.columns.children = cols

    def on_pick(self, model: str, change) -> None:
        if not self._redrawing and change["new"] is not None:
            self.ctl.choose(model, change["new"])

    def draw_tokens(self) -> None:
        s = self.state
        if s.chosen is None or s.samples is None:
            show_chart(self.tokens, None, "pick a response above to see it token by token")
            return
        model, sample = s.chosen
        self.token_note.value = (
            "<div class='fx-note'>Log-ratios against the base are unavailable: these models "
            "tokenize differently, so their tokens do not line up. Showing probabilities.</div>"
            if self.colour.value == "log_ratio" and s.log_ratio is None
            else ""
        )
        if self.colour.value == "log_ratio" and s.log_ratio is not None:
            rows = s.log_ratio[(s.log_ratio["model"] == model) & (s.log_ratio["sample"] == sample)]
            show_chart(
                self.tokens,
                charts.token_ratio_chart(rows) if len(rows) else None,
                "an empty response has no tokens",
            )
            return
        from explorer.core.tables import token_probabilities

        probs = token_probabilities(s.samples, model, sample)
        show_chart(
            self.tokens,
            charts.token_prob_chart(probs) if len(probs) else None,
            "an empty response has no tokens",
        )


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
        self.clear.on_click(lambda _: [ctl.remove_behaviour(k) for k in list(state.behaviours)])
        state.observe(
            self.redraw, names=["samples", "variability", "provenance", "cross", "behaviours"]
        )
        super().__init__([
            w.HTML("<b>Spread within each model</b>"), self.metrics, self.clusters,
            w.HTML("<b>Provenance: where does a behaviour come from?</b> <span class='fx-note'>Labels compare each descendant's 95% interval with the base's; small samples say <i>inconclusive</i>.</span>"),
            w.HBox([self.name, self.regex, self.add, self.clear]), self.behaviour, self.prov_table,
            self.first, self.entropy, self.lengths, self.cross,
        ])  # fmt: skip
        self.redraw()

    def on_add(self, _=None) -> None:
        if self.ctl.add_behaviour(self.name.value, self.regex.value):
            self.name.value, self.regex.value = "", ""

    def redraw(self, _=None) -> None:
        from explorer.core.tables import cluster_counts, entropy_by_position, first_token_comparison

        s = self.state
        if s.samples is None:
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
        show_chart(self.clusters, charts.clusters_chart(cluster_counts(s.samples)))
        if s.provenance is not None and len(s.provenance):
            show_chart(self.behaviour, charts.behaviour_chart(s.provenance))
            shown = s.provenance[
                ["behaviour", "model", "count", "n", "freq", "lo", "hi", "n_needed", "label"]
            ]
            self.prov_table.value = table_html(shown, max_rows=40)
        show_chart(self.first, charts.first_token_chart(first_token_comparison(s.samples)))
        show_chart(self.entropy, charts.entropy_chart(entropy_by_position(s.samples)))
        show_chart(self.lengths, charts.length_chart(s.samples.df))
        show_chart(
            self.cross, charts.cross_score_chart(s.cross) if s.cross is not None else None, ""
        )


class AttributionView(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        from explorer.core.attribution import list_methods

        self.state, self.ctl = state, ctl
        self.methods = list(list_methods()["method"])
        self.method = w.Dropdown(
            options=self.method_options(), value=state.method, description="Method"
        )
        self.method.observe(self.pick, names="value")
        state.observe(self.sync_methods, names=["remote", "method"])
        self.info = w.HTML()
        self.heatmaps = chart_box("pick a response in the Responses tab")
        self.diff = chart_box("")
        self.bars = chart_box("")
        state.observe(self.redraw, names=["attribution", "attribution_spread", "chosen"])
        super().__init__([self.method, self.info, self.heatmaps, self.diff, self.bars])
        self.redraw()

    def method_options(self) -> list[tuple[str, str]]:
        """(label, method): for a served family, methods that need weights say so."""
        from explorer.app.controller import needs_weights

        return [
            (f"{m} — needs local weights" if self.state.remote and needs_weights(m) else m, m)
            for m in self.methods
        ]

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
            show_chart(self.diff, None, "")
        else:
            extra = attr.meta.get("extra", {})
            gaps = [max(e["completeness_gap"]) for e in extra.values() if e.get("completeness_gap")]
            note = f" · completeness gap ≤ {max(gaps):.1%}" if gaps else ""
            self.info.value = (f"<div class='fx-note'>{escape(attr.meta['method'])} of “{escape(attr.meta['response'])}” "
                               f"after “{escape(attr.meta['prompt'])}”{escape(note)}</div>")  # fmt: skip
            show_chart(
                self.heatmaps,
                charts.attribution_heatmaps(
                    attr.df, title="Attribution per model (shared colour scale)"
                ),
            )
            diff = attr.diff()
            diff = diff[diff["model"] != attr.models[0]]
            show_chart(
                self.diff,
                charts.attribution_heatmaps(diff, title=f"Minus {attr.models[0]}")
                if len(diff)
                else None,
                "",
            )
        spread = s.attribution_spread
        show_chart(
            self.bars,
            charts.attribution_bars(spread) if spread is not None and len(spread) else None,
            "",
        )


class DataView(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state, self.ctl = state, ctl
        self.table = w.HTML()
        self.links = w.HTML()
        self.prepare = w.Button(description="Prepare downloads", icon="save")
        self.upload = w.FileUpload(accept=".json", multiple=False, description="Import session")
        self.sweep_dir = w.Text(
            placeholder="sweep folder (from family-explorer sweep)", layout=w.Layout(width="320px")
        )
        self.open_sweep = w.Button(description="Open sweep", icon="folder-open")
        self.sweep_view = w.HTML()
        self.prepare.on_click(self.on_prepare)
        self.upload.observe(self.on_upload, names="value")
        self.open_sweep.on_click(lambda _: ctl.open_sweep(self.sweep_dir.value))
        state.observe(self.redraw, names=["samples"])
        state.observe(self.redraw_sweep, names=["sweep"])
        super().__init__([w.HBox([self.prepare, self.upload]), w.HBox([self.sweep_dir, self.open_sweep]),
                          self.links, self.sweep_view, self.table])  # fmt: skip

    def redraw_sweep(self, _=None) -> None:
        from explorer.core.sweep import summary

        sweep = self.state.sweep
        if sweep is None:
            self.sweep_view.value = ""
            return
        parts = [
            "<b>Sweep: provenance labels across the prompt set</b>",
            table_html(summary(sweep["provenance"])),
        ]
        cols = ["prompt_index", "model", "n", "unique_share", "n_clusters", "modal_cluster_share"]
        variability = sweep["variability"][[c for c in cols if c in sweep["variability"].columns]]
        parts += [
            "<b>Sweep: variability per prompt and model</b>",
            table_html(variability, max_rows=100),
        ]
        self.sweep_view.value = "".join(parts)
        self.redraw()

    def redraw(self, _=None) -> None:
        s = self.state
        self.links.value = ""
        if s.samples is None:
            self.table.value = "<em>No samples yet.</em>"
            return
        cols = ["model", "sample", "seed", "text", "n_tokens", "finish_reason"]
        self.table.value = table_html(s.samples.df[cols], max_rows=200, css="fx-data")

    def on_prepare(self, _=None) -> None:
        s = self.state
        if s.samples is None:
            self.ctl.fail("Nothing to export yet: resample first.")
            return
        from io import BytesIO

        import vl_convert as vlc

        from explorer.core.tables import cluster_counts

        df = s.samples.df
        parquet = BytesIO()
        df.to_parquet(parquet, index=False)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "session.json"
            self.ctl.session().save(path)
            session = path.read_bytes()
        chart = charts.clusters_chart(cluster_counts(s.samples))
        links = [
            download_link(
                df.to_csv(index=False).encode(), "samples.csv", "samples.csv", "text/csv"
            ),
            download_link(
                parquet.getvalue(), "samples.parquet", "samples.parquet", "application/octet-stream"
            ),
            download_link(session, "session.json", "session.json", "application/json"),
            download_link(
                vlc.vegalite_to_png(chart.to_json()), "clusters.png", "clusters.png", "image/png"
            ),
            download_link(
                vlc.vegalite_to_svg(chart.to_json()).encode(),
                "clusters.svg",
                "clusters.svg",
                "image/svg+xml",
            ),
        ]
        if s.provenance is not None:
            links.append(
                download_link(
                    s.provenance.to_csv(index=False).encode(),
                    "provenance.csv",
                    "provenance.csv",
                    "text/csv",
                )
            )
        self.links.value = " ".join(links)

    def on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(item["name"]).name
            path.write_bytes(bytes(item["content"]))
            self.ctl.import_session(path)


def header() -> w.HTML:
    return w.HTML(STYLE + "<div class='fx-title'>Model Family Explorer</div>"
                  "<div class='fx-sub'>One model, many models: resample a base and its descendants, "
                  "compare the spread of their answers, and see where each behaviour comes from.</div>")  # fmt: skip
