"""The panels above the tabs (family, prompt, sampling) and the banner: thin ipywidgets views
that observe the state and call the controller. No computation here, and no torch import."""

from __future__ import annotations

import ipywidgets as w

from explorer.app.controller import Controller
from explorer.app.state import AppState
from explorer.app.widgets import STYLE, escape

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


class ConfirmBar(w.HBox):
    """The question the app asks before long work: its estimate, Run and Cancel."""

    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state = state
        self.message = w.HTML()
        self.run = w.Button(description="Run", icon="play", button_style="warning")
        self.cancel = w.Button(description="Cancel")
        self.run.on_click(lambda _: ctl.confirm())
        self.cancel.on_click(lambda _: ctl.decline())
        super().__init__([self.message, self.run, self.cancel], layout=w.Layout(align_items="center"))
        self.add_class("fx-confirm")
        state.observe(self.redraw, names=["confirm"])
        self.redraw()

    def redraw(self, _=None) -> None:
        asked = self.state.confirm
        self.message.value = f"<div class='fx-status'>{escape(asked)}</div>" if asked else ""
        self.layout.display = "flex" if asked else "none"


class FamilyPanel(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        from explorer.core.resolve import list_presets

        self.state, self.ctl = state, ctl
        self.preset = w.Dropdown(options=list_presets(), value=state.preset, description="Preset")
        self.base = w.Text(placeholder="or hub id, folder, http://…/v1", description="Base", layout=w.Layout(width="270px"))
        self.extra = w.Text(placeholder="comma-separated ids or folders", description="Add", layout=w.Layout(width="270px"))
        self.members = w.SelectMultiple(
            description="Compare", rows=5, layout=w.Layout(width="270px")
        )
        self.load = w.Button(description="Load", icon="download", button_style="primary")
        self.progress = w.FloatProgress(
            min=0, max=1, layout=w.Layout(width="140px", visibility="hidden")
        )
        self.load.on_click(self.on_load)
        self.members.observe(self.on_members, names="value")
        state.observe(self.redraw, names=["available", "selected", "relations"])
        state.observe(self.redraw_loading, names=["running", "progress"])
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
        self.redraw_loading()

    def redraw_loading(self, _=None) -> None:
        s = self.state
        loading = s.running == "Loading"
        self.load.disabled = loading
        self.progress.layout.visibility = "visible" if loading else "hidden"
        self.progress.value = s.progress.get("loading", 0.0)


class PromptPanel(w.VBox):
    def __init__(self, state: AppState, ctl: Controller) -> None:
        self.state, self.ctl = state, ctl
        self.text = w.Textarea(
            value=state.prompt, placeholder="Type a prompt", rows=3, layout=w.Layout(width="270px")
        )
        self.examples = w.Dropdown(
            options=["(examples)"], description="Examples", layout=w.Layout(width="270px")
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
        style = {"description_width": "112px"}
        lay = w.Layout(width="200px")
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
        state.observe(self.redraw, names=["running", "progress", "selected", "family", "replay"])
        super().__init__([section("Sampling", self.n, self.temperature, self.top_p, self.top_k, self.max_new, self.seed,
                                  self.fresh, w.HBox([self.resample, self.stop]), self.bars)])  # fmt: skip
        self.redraw()

    def redraw(self, _=None) -> None:
        s = self.state
        self.resample.disabled = bool(s.running) or s.family is None
        self.resample.tooltip = ("A replay of a saved session: no model is loaded. Load a family to resample."
                                 if s.family is None and s.replay else "Sample every selected model n times")  # fmt: skip
        self.stop.disabled = not s.running
        if not s.running:
            self.bars.children, self._bars = [], {}
            return
        for model, frac in s.progress.items():
            if model not in self._bars:
                self._bars[model] = w.FloatProgress(min=0, max=1, description=model, style={"description_width": "120px"},
                                                    layout=w.Layout(width="300px"))  # fmt: skip
                self.bars.children = list(self._bars.values())
            self._bars[model].value = frac


def header() -> w.HTML:
    return w.HTML(STYLE + "<div class='fx-title'>Model Family Explorer</div>"
                  "<div class='fx-sub'>One model, many models: resample a base and its descendants, "
                  "compare the spread of their answers, and see where each behaviour comes from.</div>")  # fmt: skip
