"""The Discover tab: what each adaptation changed over a prompt set, found without being told
what to look for. Lays out `state.discovery` (explorer.core.discover.Discovery); the search and
opening a prompt are the controller's (`controller.discover`)."""

from __future__ import annotations

import ipywidgets as w
import pandas as pd

from explorer import discover_charts
from explorer.app.state import AppState
from explorer.app.widgets import chart_box, escape, show_chart
from explorer.core.findings import CHANGES

INTRO = (
    "What did each adaptation change? Discover samples every model on a whole prompt set, reads each "
    "descendant's and the base's samples through both models, and ranks the prompts where a descendant "
    "departs most (KL) and the words it raised or lowered. The top words become candidate behaviours, "
    "labelled on <b>fresh</b> samples: those labels hold together at 95% over the whole page."
)
SETS = [("the zoo's probes", "probes"), ("general set (200 prompts)", "general"), ("a file or sweep folder…", "file")]


class DiscoverView(w.VBox):
    def __init__(self, state: AppState, ctl) -> None:
        self.state, self.ctl = state, ctl
        self.which = w.Dropdown(options=SETS, value="general", description="Prompts", layout=w.Layout(width="300px"))
        self.path = w.Text(placeholder="prompts.csv, .jsonl, .txt or a sweep folder", layout=w.Layout(width="300px"))
        self.n = w.BoundedIntText(value=state.discover_n, min=1, max=256, description="samples", layout=w.Layout(width="150px"))
        self.confirm_n = w.BoundedIntText(value=state.discover_confirm, min=0, max=1024, description="confirm",
                                          layout=w.Layout(width="150px"))  # fmt: skip
        self.go = w.Button(description="Discover", icon="binoculars", button_style="primary")
        self.go.on_click(self.on_run)
        self.summary = w.HTML()
        self.divergence, self.words = chart_box(""), chart_box("")
        self.prompts = w.Dropdown(description="Prompt", layout=w.Layout(width="620px"))
        self.open_prompt = w.Button(description="Open prompt", icon="folder-open")
        self.open_prompt.on_click(lambda _: self.prompts.value is not None and ctl.discover.open_prompt(self.prompts.value))
        self.word = w.Dropdown(description="Word", layout=w.Layout(width="380px"))
        self.word.observe(self.on_word, names="value")
        self.contexts, self.found = w.HTML(), w.HTML()
        self.which.observe(lambda _: self.redraw_controls(), names="value")
        state.observe(self.redraw, names=["discovery", "family", "weights", "running"])
        state.observe(self.redraw_contexts, names=["discover_word"])
        super().__init__(self._layout())
        self.add_class("fx-discover")
        self.redraw()

    def _layout(self) -> list[w.Widget]:
        controls = w.HBox([self.which, self.path, self.n, self.confirm_n, self.go], layout=w.Layout(flex_flow="row wrap"))
        return [w.HTML(f"<div class='fx-note'>{INTRO}</div>"), controls, self.summary,
                self.divergence, w.HBox([self.prompts, self.open_prompt], layout=w.Layout(flex_flow="row wrap")),
                self.words, self.word, self.contexts,
                w.HTML("<b>Discovered behaviours, labelled on fresh samples</b>"), self.found]  # fmt: skip

    def on_run(self, _=None) -> None:
        spec = self.path.value.strip() if self.which.value == "file" else self.which.value
        if not spec:
            self.ctl.fail("Discover: type the path of a prompt file (.csv, .jsonl, .txt) or a sweep folder.")
            return
        self.ctl.discover.options(prompts=spec, n=int(self.n.value), confirm=int(self.confirm_n.value))
        self.ctl.discover.run()

    def on_word(self, change) -> None:
        if change["new"] is not None:
            self.ctl.discover.show_word(*change["new"])

    def redraw_controls(self) -> None:
        self.path.layout.display = "" if self.which.value == "file" else "none"

    def redraw(self, _=None) -> None:
        s = self.state
        fable = s.family is not None and s.family.name == "fable"
        if s.discovery is None and self.which.value != "file":
            self.which.value = "probes" if fable else "general"
        self.redraw_controls()
        self.go.disabled = s.family is None or not s.weights or bool(s.running)
        found = s.discovery
        if found is None:
            self.summary.value = "<em>Choose a prompt set and press Discover.</em>" if s.weights else (
                f"<em>Discover needs the models' weights; this family is served by {escape(s.server)}.</em>")
            for box in (self.divergence, self.words):
                show_chart(box, None, "")
            self.prompts.options, self.word.options, self.found.value, self.contexts.value = [], [], "", ""
            return
        self.summary.value = f"<div class='fx-note'>{escape(found.summary())}.</div>"
        show_chart(self.divergence, discover_charts.divergence_bars(found.df) if len(found.df) else None, "")
        show_chart(self.words, discover_charts.word_bars(found.words) if len(found.words) else None, "")
        self.prompts.options = prompt_options(found.df)
        self.word.options = word_options(found.words)
        self.prompts.value = self.prompts.options[0][1] if self.prompts.options else None
        self.word.value = self.word.options[0][1] if self.word.options else None
        self.found.value = findings_html(found.findings)
        self.redraw_contexts()

    def redraw_contexts(self, _=None) -> None:
        s = self.state
        if s.discovery is None or s.discover_word is None:
            self.contexts.value = ""
            return
        self.contexts.value = contexts_html(s.discovery, *s.discover_word)


def prompt_options(df: pd.DataFrame, top: int = 5) -> list[tuple[str, int]]:
    """Each descendant's `top` prompts by KL, labelled "#1 fable-late · KL 7.79 · the capital …"."""
    shown = df[df["rank"] <= top].sort_values(["rank", "model"])
    return [(f"#{r.rank} {r.model} · KL {r.kl_mean:.2f} · {r.prompt}", int(r.prompt_index)) for r in shown.itertuples()]


def word_options(words: pd.DataFrame, top: int = 5) -> list[tuple[str, tuple[str, str]]]:
    """Each descendant's notable raised and lowered words (as the chart shows them), labelled
    with their signed change."""
    shown = discover_charts.notable(words, top).sort_values(["model", "direction", "word_rank"], ascending=[True, False, True])
    sign = {"raised": 1, "lowered": -1}
    return [(f"{r.model} {r.direction} “{r.word}” ({sign[r.direction] * r.score:+.2f} per response)", (r.model, r.word))
            for r in shown.itertuples()]  # fmt: skip


def contexts_html(found, model: str, word: str) -> str:
    """Where the word's probability moved most: the prompt, whose sample, the text before it."""
    ids = set(found.tokens[(found.tokens["model"] == model) & (found.tokens["word"] == word)]["token_id"])
    rows = found.contexts[(found.contexts["model"] == model) & found.contexts["token_id"].isin(ids)]
    rows = rows[rows["dp"].abs() >= 0.01]  # where it moved at all
    rows = rows.reindex(rows["dp"].abs().sort_values(ascending=False).index).head(9)
    items = []
    for r in rows.itertuples():
        samples = found.samples[int(r.prompt_index)]
        source = model if r.source == "desc" else samples.base
        tokens = samples.row(source, int(r.sample))["tokens"]
        before = "".join(tokens[max(0, r.position - 10) : r.position]) or "(its first word)"
        items.append(f"<li>«{escape(samples.prompt)}» → {escape(source)} sample {int(r.sample)}: …{escape(before)}"
                     f"<b>▸</b> <span class='fx-note'>(p changed by {r.dp:+.2f} here; sampled “{escape(tokens[r.position])}”)</span></li>")  # fmt: skip
    return f"<ul class='fx-contexts'>{''.join(items)}</ul>" if items else "<em>no context recorded</em>"


def findings_html(table: pd.DataFrame) -> str:
    """The confirmed changes first (as sentences, with the prompt and who proposed them), then a
    count of the rest."""
    if table is None or table.empty:
        return "<em>No candidate was confirmed (none proposed, or confirmation was off).</em>"
    changes = table[table["label"].isin(CHANGES)]
    items = [f"<li><b>{escape(r.sentence)}</b> <span class='fx-note'>on «{escape(r.prompt)}»; proposed by "
             f"{escape(r.proposed_by)}</span></li>" for r in changes.itertuples()]  # fmt: skip
    rest = table["label"].value_counts().drop(list(CHANGES), errors="ignore")
    tail = ", ".join(f"{n} {label}" for label, n in rest.items())
    return f"<ul>{''.join(items)}</ul>" + (f"<div class='fx-note'>Also: {escape(tail)}.</div>" if tail else "")
