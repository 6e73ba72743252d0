"""One self-contained HTML report of a session or a sweep: opens from disk, offline, with no
kernel and no models — the family, prompt, parameters, seeds and versions; the responses side
by side; the findings; the charts (Vega, Vega-Lite and vega-embed inline, from vl-convert's
bundle, the route altair's own inline save takes), tooltips kept.

Everything a model wrote or a user typed is text: HTML-escaped in the page, and JSON inside
script tags with `<`, `>` and `&` written as unicode escapes, so no string can close a tag.
Size: the scripts are ≈ 1 MB; each chart carries only the columns it draws.
"""

from __future__ import annotations

import datetime
import html
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from explorer import charts
from explorer.attribution_text import faithfulness_html
from explorer.core.analysis import analyse
from explorer.core.decide import decided_behaviours
from explorer.core.findings import decided, findings, needed_as_text
from explorer.core.results import library_versions
from explorer.core.samples import SampleSet
from explorer.core.sequential import sequential_provenance
from explorer.core.session import Session as CoreSession

CARD_CHARS = 280


class Session(CoreSession):
    """`fx.Session`: the core's session type with `report()`, which needs the presentation
    layer (charts), so it lives here rather than in `explorer.core`."""

    def report(self, path: str | Path, title: str | None = None) -> Path:
        """One self-contained HTML file of this session."""
        return report(self, path, title)


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element whatever strings it holds."""
    text = json.dumps(value, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def report(source: CoreSession | SampleSet | str | Path | Any, path: str | Path, title: str | None = None) -> Path:
    """Write the report of a session (or a SampleSet, a sweep folder, or a Discovery) to `path`;
    returns it."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        body, charts_ = sweep_sections(Path(source))
        heading = title or f"Sweep {Path(source).name}"
    elif type(source).__name__ == "Discovery":
        from explorer.discover_report import discovery_sections

        body, charts_ = discovery_sections(source, esc, table, chart_section, sentences)
        heading = title or "What each adaptation changed (Discover)"
    else:
        session = source if isinstance(source, CoreSession) else as_session(source)
        body, charts_ = session_sections(session)
        heading = title or "Model family session"
    out = Path(path)
    out.write_text(page(heading, body, charts_), encoding="utf-8")
    return out


def as_session(samples: SampleSet) -> CoreSession:
    """A SampleSet as a session: an amplified one (with a `lam` column) as the path section."""
    if "lam" in samples.df:
        return CoreSession(family=samples.family, amplified=samples)
    return CoreSession(family=samples.family, samples=samples)


def session_sections(session: CoreSession) -> tuple[list[str], list[dict]]:
    samples = session.samples
    specs: list[dict] = []
    if samples is None and session.amplified is not None:
        return [family_section(session.amplified.family), path_section(session.amplified, session.behaviours, specs)], specs
    if samples is None:
        raise ValueError("report: the session holds no samples to report")
    result = analyse(samples, session.behaviours or None)
    decided_on = decided_behaviours(samples)
    if decided_on is not None:  # sampled until decided: the labels on confidence sequences
        result.provenance = sequential_provenance(samples, decided_on)
        result.findings = findings(result.provenance)
    body = [family_section(samples.family or session.family), run_section(samples),
            findings_section(result.findings, samples.meta.get("decided"))]  # fmt: skip
    body.append(responses_section(samples, result.clusters))
    body.append(chart_section("Answers and behaviours", specs, [
        charts.clusters_chart(result.cluster_counts), charts.behaviour_chart(result.provenance),
        charts.first_token_chart(result.first_tokens), charts.entropy_chart(result.entropy),
        charts.length_chart(samples.df),
    ]))  # fmt: skip
    if session.attribution is not None:
        attr = session.attribution
        diff = attr.diff()
        diff = diff[diff["model"] != attr.models[0]]
        parts = [charts.attribution_heatmaps(attr.df, title="Attribution per model: response tokens (rows) × source tokens, one colour scale")]
        if len(diff):
            parts.append(charts.attribution_heatmaps(diff, title=f"Minus {attr.models[0]}"))
        body.append(f"<p class='note'>{esc(attr.summary())}</p>" + chart_section("Attribution", specs, parts))
        if attr.meta.get("faithfulness"):
            body.append("<h2>Which method to believe</h2>" + faithfulness_html(pd.DataFrame(attr.meta["faithfulness"])))
    if session.amplified is not None:
        body.append(path_section(session.amplified, session.behaviours, specs))
    return body, specs


def path_section(amplified: SampleSet, behaviours: dict[str, str], specs: list[dict]) -> str:
    """Amplified sampling: each behaviour's rate along the path, and the λ = 1 rates read back."""
    from explorer.core.decide import cluster_behaviours
    from explorer.core.extrapolate import extrapolate, fitted_curve, rates_by_lambda, sentences
    from explorer.path_charts import rate_by_lambda_chart

    rates = rates_by_lambda(amplified, behaviours or cluster_behaviours(amplified))
    fits, descendant = extrapolate(rates), amplified.meta["amplify"]["descendant"]
    lines = "".join(f"<li>{esc(x)}</li>" for x in sentences(fits, descendant))
    head = (f"<p class='note'>“{esc(amplified.prompt)}” sampled {amplified.params.n} times at each λ of "
            f"z_base + λ (z_desc − z_base) towards {esc(descendant)}.</p><ul>{lines}</ul>")  # fmt: skip
    chart = rate_by_lambda_chart(rates, fits, fitted_curve(rates), descendant)
    return chart_section("Along the base → descendant path (amplified sampling)", specs, [chart]).replace("</h2>", "</h2>" + head, 1)


def sweep_sections(folder: Path) -> tuple[list[str], list[dict]]:
    from explorer.core.sweep import load_sweep, summary

    sweep = load_sweep(folder)
    manifest = sweep["manifest"]
    body = [f"<h2>Sweep</h2><p>{len(manifest.get('prompts', []))} prompts · family "
            f"<b>{esc(manifest.get('family', {}).get('name', ''))}</b> · parameters "
            f"<code>{esc(json.dumps(manifest.get('params', {})))}</code></p>"]  # fmt: skip
    body.append("<h2>Labels across the prompt set</h2>" + table(summary(sweep["provenance"])))
    prov = sweep["provenance"]
    for index, group in prov.groupby("prompt_index", sort=True):
        prompt = group["prompt"].iloc[0] if "prompt" in group else manifest.get("prompts", [""])[int(index)]
        rows = findings(group.drop(columns=[c for c in ("prompt_index", "prompt") if c in group]))
        body.append(f"<h3>Prompt {int(index)}: “{esc(prompt)}”</h3>" + sentences(rows))
    body.append(versions_section(manifest.get("versions", {})))
    return body, []


def family_section(family: dict) -> str:
    rows = "".join(
        f"<tr><td><b>{esc(m.get('label'))}</b></td><td>{esc(m.get('relation', ''))}</td>"
        f"<td><code>{esc(m.get('id'))}</code></td><td>{esc(card_summary(m.get('id', '')))}</td></tr>"
        for m in family.get("members", [])
    )
    return (f"<h2>Family: {esc(family.get('name', ''))}</h2><table><tr><th>member</th><th>relation</th>"
            f"<th>source</th><th>card</th></tr>{rows}</table>")  # fmt: skip


def card_summary(model_id: str) -> str:
    """The first prose paragraph of a local model card (after its front matter), shortened."""
    card = Path(model_id) / "README.md"
    if not model_id or not card.is_file():
        return ""
    text = re.sub(r"^---.*?---", "", card.read_text(encoding="utf-8", errors="replace"), flags=re.S)
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip() and not p.lstrip().startswith("#")]
    first = paragraphs[0] if paragraphs else ""
    return first if len(first) <= CARD_CHARS else first[: CARD_CHARS - 1] + "…"


def run_section(samples: SampleSet) -> str:
    seeds = samples.df.groupby("model", sort=False)["seed"].first().to_dict() if "seed" in samples.df else {}
    steer = samples.meta.get("steering")
    steered = (f"<p class='note'>Steering (fx.steer): <b>{esc(steer['label'])}</b> is {esc(samples.models[0])} "
               f"with {steer['scale']:g} × {esc(steer['model'])}'s activation difference added to block "
               f"{steer['layer']}'s output at every position; its labels say whether that difference alone "
               "brings a behaviour.</p>") if steer else ""  # fmt: skip
    return (f"<h2>Prompt</h2><pre class='prompt'>{esc(samples.prompt)}</pre>" + steered +
            f"<p>Sampling: <code>{esc(json.dumps(samples.params.to_dict()))}</code> · first seed per model: "
            f"<code>{esc(json.dumps(seeds, default=str))}</code></p>"
            + versions_section(samples.meta.get("versions") or library_versions()))  # fmt: skip


def versions_section(versions: dict) -> str:
    return f"<p class='note'>Library versions: {esc(', '.join(f'{k} {v}' for k, v in versions.items()))}</p>"


def findings_section(table_: pd.DataFrame, decided: dict | None = None) -> str:
    head = ("<h2>Findings</h2><p class='note'>The labels hold together: the chance that any of them is wrong "
            "is at most 5% (intervals widened for the number of comparisons).</p>")  # fmt: skip
    if decided:
        looks = decided.get("looks") or []
        head += (f"<p class='note'>Sampled until decided ({len(looks)} looks, stopped: {esc(decided.get('reason', ''))}): "
                 "the labels rest on confidence sequences, valid however often the results were looked at.</p>")  # fmt: skip
    cols = ["behaviour", "model", "label", "freq", "lo", "hi", "base_freq", "base_lo", "base_hi", "n_needed"]
    return head + sentences(table_) + table(needed_as_text(table_[[c for c in cols if c in table_]]))


def sentences(table_: pd.DataFrame) -> str:
    rows = decided(table_)
    if rows.empty:
        return "<p class='note'>No finding is decided at these sample sizes.</p>"
    return "<ul>" + "".join(f"<li>{esc(s)}</li>" for s in rows["sentence"]) + "</ul>"


def responses_section(samples: SampleSet, clusters: pd.Series) -> str:
    columns = []
    for model in samples.models:
        rows = samples.df[samples.df["model"] == model]
        items = "".join(f"<li>{esc(text) or '<em>(empty)</em>'}{chip(text, clusters.loc[i])}</li>"
                        for i, text in zip(rows.index, rows["text"], strict=True))  # fmt: skip
        columns.append(f"<div class='col'><h3>{esc(model)}</h3><ol start='0'>{items}</ol></div>")
    return f"<h2>Responses</h2><div class='cols'>{''.join(columns)}</div>"


def chip(text: str, cluster: str) -> str:
    """The answer cluster beside a response, unless it only repeats the text."""
    same = re.sub(r"\W+", " ", str(text)).strip().lower() == str(cluster).strip().lower()
    return "" if same else f" <span class='chip'>{esc(cluster)}</span>"


def chart_section(title: str, specs: list[dict], made: list) -> str:
    divs = []
    for chart in made:
        specs.append(chart.to_dict())
        divs.append(f"<div class='chart' id='chart-{len(specs) - 1}'></div>")
    return f"<h2>{esc(title)}</h2>" + "".join(divs)


def table(df: pd.DataFrame) -> str:
    if df is None or df.empty:
        return "<p class='note'>nothing</p>"
    return df.to_html(index=False, escape=True, border=0, float_format=lambda v: f"{v:.3g}", classes="data")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1180px; padding: 0 16px; color: #111827; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #e5e7eb; }
table { border-collapse: collapse; font-size: 12px; } td, th { padding: 2px 8px; border-bottom: 1px solid #e5e7eb; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
.note { color: #4b5563; font-size: 13px; } .prompt { white-space: pre-wrap; background: #f3f4f6; padding: 8px; }
.cols { display: flex; flex-wrap: wrap; gap: 14px; } .col { flex: 1 1 200px; max-width: 380px; font-size: 13px; }
.col li { overflow-wrap: anywhere; } .chip { color: #4b5563; background: #eef2ff; border-radius: 4px; padding: 0 4px; font-size: 11px; }
.chart { margin: 10px 0; max-width: 100%; overflow-x: auto; }
"""


def page(title: str, body: list[str], specs: list[dict]) -> str:
    import vl_convert as vlc
    from altair.utils._importers import vl_version_for_vl_convert

    bundle = vlc.javascript_bundle(vl_version=vl_version_for_vl_convert()) if specs else ""
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    embed = ("const specs = JSON.parse(document.getElementById('fx-specs').textContent);\n"
             "specs.forEach((spec, i) => vegaEmbed('#chart-' + i, spec, {renderer: 'svg', actions: false}).catch(console.error));")  # fmt: skip
    scripts = (f"<script>{bundle}</script><script type='application/json' id='fx-specs'>{script_json(specs)}</script>"
               f"<script>{embed}</script>") if specs else ""  # fmt: skip
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>"
            f"<p class='note'>Made by Model Family Explorer on {made}. Opens offline: data and scripts are inline.</p>"
            f"{''.join(body)}{scripts}</body></html>")  # fmt: skip
